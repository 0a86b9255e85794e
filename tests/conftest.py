"""Shared fixtures: the real-data root.

``real_data_root`` is ``$LOSSCORR_DATA`` when set, else the project's shared
data folder ``<repository>/../shared/data`` when it exists; otherwise the test
is skipped. Mark a test ``@pytest.mark.real_data("mnist10k", ...)`` to name the
data sets it reads: when the chosen root lacks their files the test fails
(it is not skipped), because a data root that was provided should be complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from losscorrection import data

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_data(*datasets): the test reads these data sets from the real_data_root fixture"
    )


def find_real_data_root(names: tuple[str, ...] | list[str] = ()) -> Path:
    """The real data root holding the data sets ``names`` (see the module docstring):
    skips when no root is configured, fails when the configured one lacks files."""
    env = os.environ.get(data.DATA_ENV)
    if env:
        root, origin = Path(env).expanduser().resolve(), f"${data.DATA_ENV}"
    elif SHARED_DATA.is_dir():
        root, origin = SHARED_DATA.resolve(), "the shared data folder"
    else:
        pytest.skip(f"no real data: set ${data.DATA_ENV} or provide {SHARED_DATA}")
    if not root.is_dir():
        pytest.fail(f"real data root {root} ({origin}) is not a folder")
    lacking = {name: data.missing_files(name, root) for name in names}
    lacking = {name: files for name, files in lacking.items() if files}
    if lacking:
        details = "; ".join(f"{name}: {', '.join(files)}" for name, files in lacking.items())
        pytest.fail(f"real data root {root} ({origin}) lacks files: {details}")
    return root


@pytest.fixture
def real_data_root(request: pytest.FixtureRequest) -> Path:
    """The folder with the real data sets named by the test's ``real_data`` markers."""
    return find_real_data_root([name for marker in request.node.iter_markers("real_data") for name in marker.args])


@pytest.fixture
def group_checkpoint_paths(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The checkpoint path of every group the runner plans, in order (each group's
    lock is ``<path>.lock``): a test holds that lock to play another process."""
    from losscorrection.training import runner

    paths: list[Path] = []
    checkpoint_path = runner._checkpoint_path

    def recording(*args, **kwargs) -> Path:
        paths.append(checkpoint_path(*args, **kwargs))
        return paths[-1]

    monkeypatch.setattr(runner, "_checkpoint_path", recording)
    return paths
