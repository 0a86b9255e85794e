"""Consistency checks for the packaging and project metadata.

These tests keep pyproject.toml, environment.yml, the README quick start and
the CI entry point in agreement with each other.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def _normalise(requirement: str) -> str:
    """Canonical form of a requirement string: PEP 503 name, no whitespace."""
    match = _NAME_RE.match(requirement)
    assert match, f"unparsable requirement: {requirement!r}"
    name, extras, spec = match.groups()
    name = re.sub(r"[-_.]+", "-", name).lower()
    extras = (extras or "").replace(" ", "").lower()
    spec = re.sub(r"\s+", "", spec)
    return f"{name}{extras}{spec}"


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def requirements(pyproject) -> list[str]:
    project = pyproject["project"]
    reqs = list(project["dependencies"])
    reqs += list(project.get("optional-dependencies", {}).get("test", []))
    return reqs


@pytest.fixture(scope="module")
def conda_pip_entries() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [
        dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict) and "pip" in dep
    ]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: subsection"
    return [str(entry) for entry in pip_sections[0]]


def test_version(pyproject):
    assert pyproject["project"]["name"] == "losscorrection"
    assert pyproject["project"]["version"] == "0.1.0"


def test_environment_matches_pyproject(requirements, conda_pip_entries):
    editable = [e for e in conda_pip_entries if e.strip() == "-e ."]
    assert editable, "environment.yml should install the package itself with '-e .'"
    conda = {_normalise(e) for e in conda_pip_entries if e.strip() != "-e ."}
    assert conda == {_normalise(r) for r in requirements}


def test_environment_lists_python_and_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "losscorrection"
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.replace(" ", "").startswith("python>=3.10") for d in plain)
    assert "pip" in plain


def test_requirements_have_lower_bounds(requirements):
    for req in requirements:
        spec = _normalise(req)
        assert ">=" in spec, f"{req!r} has no lower bound"
        assert "==" not in spec, f"{req!r} is pinned exactly"


def test_requires_python(pyproject):
    assert pyproject["project"]["requires-python"].replace(" ", "") == ">=3.10"


def test_readme_quick_start_comes_first():
    lines = (ROOT / "README.md").read_text().splitlines()
    # The region of interest is the text before the first "##" heading plus
    # the first "##" section, i.e. everything up to the second "##" heading.
    headings = [i for i, line in enumerate(lines) if re.match(r"^##\s", line)]
    end = headings[1] if len(headings) > 1 else len(lines)
    head = lines[:end]
    # Only code lines count: collect lines inside fenced blocks.
    code, in_fence = [], False
    for line in head:
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            code.append(line.strip())
    assert any(c.startswith("make test") for c in code), "README must start with `make test`"
    assert any(c.startswith("make book") for c in code), "README must start with `make book`"


def test_ci_script():
    script = ROOT / ".ci" / "run"
    text = script.read_text()
    assert "make test" in text
    assert re.search(
        r"LOSSCORR_DATA=(\$\{LOSSCORR_DATA:-)?\.\./shared/data\b", text
    ), ".ci/run must default LOSSCORR_DATA to ../shared/data"
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK), ".ci/run must be executable"


def test_the_publishing_workflow_builds_the_book_without_data_and_deploys_it():
    """The workflow parses as YAML, builds with `make book` from the committed
    results (no data root set), uploads _build/html and deploys it to Pages."""
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    assert "make book" in runs and "LOSSCORR_DATA" not in runs
    uses = [step.get("uses", "") for step in build["steps"] + deploy["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert deploy["needs"] == "build"
    appended = runs.split("cat >> _config.yml <<EOF\n", 1)[1].split("\nEOF", 1)[0]
    config = yaml.safe_load((ROOT / "_config.yml").read_text() + "\n" + appended)
    assert config["repository"]["url"].startswith("https://github.com/${{ github.repository }}")
    assert "launch_buttons" not in config


CHECKPOINT_LIMIT_BYTES = 16 * 2**20  # a committed training state is small (a ResNet-14 run: 2.2 MB), never a data set


def test_no_lock_or_temporary_file_is_tracked_and_checkpoints_are_small():
    """Lock files and half-written tables are working files of a run, never
    part of the repository; the only tracked training states are unfinished
    groups' checkpoints under ``results/checkpoints/``, each a few MB."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    working_files = [path for path in tracked if path.endswith((".lock", ".tmp")) or "/.partial/" in f"/{path}"]
    assert not working_files, f"tracked working files: {working_files}"
    states = [path for path in tracked if path.endswith((".pt", ".pth", ".ckpt", ".safetensors"))]
    misplaced = [path for path in states if not path.startswith("results/checkpoints/")]
    assert not misplaced, f"training states outside results/checkpoints/: {misplaced}"
    large = [path for path in states if (ROOT / path).stat().st_size > CHECKPOINT_LIMIT_BYTES]
    assert not large, f"checkpoints over {CHECKPOINT_LIMIT_BYTES >> 20} MB: {large}"


def test_submodules_load_on_first_use():
    """``import losscorrection as lc`` imports the mathematics only; ``lc.training``
    and the other submodules import on first use; an unknown name is an AttributeError."""
    code = (
        "import sys, losscorrection as lc\n"
        "assert 'losscorrection.training' not in sys.modules and 'pandas' not in sys.modules\n"
        "assert callable(lc.training.run_cells) and callable(lc.data.load_dataset)\n"
        "assert 'losscorrection.training' in sys.modules\n"
        "try:\n    lc.no_such_module\nexcept AttributeError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "has no attribute 'no_such_module'" in out
