"""The book end to end: every notebook executed by papermill with the smoke
profile, the Jupyter Book built from them (warnings are errors), and the HTML
checked: theorems and proofs rendered, figures present, no error output, every
Table 2 cell on the status page.

The sources are copied to a temporary folder, so the build never touches the
working tree (committed results included).

The last test opens the index and the theory page in headless Chromium with a
local copy of MathJax 3 (the book loads it from a CDN, which an offline test
cannot reach); `make test` installs both where it can (see the Makefile's
`browser` target), and the test is skipped where they are absent.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import numpy as np
import pytest
from conftest import find_real_data_root
from PIL import Image

from losscorrection import training
from losscorrection.results import METHODS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def built_book(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("book")
    for name in ("book", "notebooks", "results", "lib"):  # lib: pages include library source
        if (REPO / name).exists():
            shutil.copytree(REPO / name, root / name,
                            ignore=shutil.ignore_patterns("generated", "__pycache__", "*.egg-info"))
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    env = dict(os.environ)
    # absolute: the notebooks run from a temporary copy, where a relative root would not exist
    env["LOSSCORR_DATA"] = str(request.getfixturevalue("book_data_root"))
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "book/execute_notebooks.py", "--profile", "smoke", "--device", "cpu", "--quiet",
         "--results-dir", str(root / "smoke-results")],
        cwd=root, env=env, check=True,
    )
    subprocess.run(
        [str(bin_dir / "jupyter-book"), "build", ".", "--path-output", ".", "--config", "_config.yml",
         "--toc", "book/_toc.yml", "-W", "-n", "--keep-going", "-q"],
        cwd=root, env=env, check=True,
    )
    return root


@pytest.fixture(scope="module")
def book_data_root():
    """The real data root (CIFAR-10 JPEG copy, MNIST test set) the smoke notebooks read."""
    return find_real_data_root(("mnist10k", "cifar10jpg"))


def html(root: Path, page: str) -> str:
    return (root / "_build" / "html" / f"{page}.html").read_text()


def test_every_notebook_is_in_the_table_of_contents():
    toc = (REPO / "book" / "_toc.yml").read_text()
    for name in NOTEBOOKS:
        assert f"book/generated/{name}" in toc, name


def test_notebooks_declare_profile_and_only_parameters_they_use():
    for name in NOTEBOOKS:
        text = (REPO / "notebooks" / f"{name}.py").read_text()
        before, rest = text.split('# %% tags=["parameters"]', 1)
        cell, after = rest.split("# %%", 1)
        declared = [node.targets[0].id for node in ast.parse(cell).body if isinstance(node, ast.Assign)]
        assert "profile" in declared, name
        used = {node.id for node in ast.walk(ast.parse(before + "# %%" + after)) if isinstance(node, ast.Name)}
        assert not set(declared) - used, (name, "declared but never used", sorted(set(declared) - used))


def test_every_glued_name_in_the_prose_is_glued_by_the_code():
    """Numbers reach the prose as {glue:text}`name` (report.glue_numbers): each name a
    markdown cell uses must be passed to glue_numbers in the same notebook."""
    for name in NOTEBOOKS:
        cells = jupytext.read(REPO / "notebooks" / f"{name}.py").cells
        prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        code = "\n".join(c.source for c in cells if c.cell_type == "code")
        wanted = set(re.findall(r"\{glue:text\}`([A-Za-z_0-9]+)(?::[^`]*)?`", prose))
        glued = {keyword.arg for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call)
                 and getattr(node.func, "attr", getattr(node.func, "id", None)) == "glue_numbers"
                 for keyword in node.keywords}
        assert wanted <= glued, (name, "not glued", sorted(wanted - glued))
        assert glued <= wanted, (name, "glued but never shown", sorted(glued - wanted))


def test_executed_notebooks_have_no_error_output(built_book):
    for name in NOTEBOOKS:
        notebook = json.loads((built_book / "book" / "generated" / f"{name}.ipynb").read_text())
        for cell in notebook["cells"]:
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", (name, output.get("evalue"))
                text = "".join(output.get("text", ""))
                assert "Traceback" not in text, (name, text[:500])
                # library warnings that carry information (an ill-conditioned T̂ in the
                # smoke profile) may show; tool noise on the page may not
                for noise in ("TqdmWarning", "FutureWarning", "DeprecationWarning", "UserWarning"):
                    assert noise not in text, (name, text[:500])


def test_theorems_and_proofs_are_rendered(built_book):
    page = html(built_book, "book/theory")
    assert page.count('class="admonition proof"') >= 4 or page.count("proof") >= 4
    for theorem in ("Theorem 1", "Theorem 2", "Theorem 3", "Theorem 4"):
        assert theorem in page
    assert "Proof" in page
    assert "Algorithm 1" in html(built_book, "book/algorithm")


def test_every_figure_is_an_image(built_book):
    for name in NOTEBOOKS:
        notebook = json.loads((built_book / "book" / "generated" / f"{name}.ipynb").read_text())
        figures = sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))
        page = html(built_book, f"book/generated/{name}")
        assert page.count("<img") >= figures, name
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page):
            if not src.startswith(("http", "data:")):
                assert (built_book / "_build" / "html" / "book" / "generated" / src).resolve().exists(), src


def test_mnist_chapter_leads_with_the_papers_protocol_then_the_small_variants(built_book):
    page = html(built_book, "book/generated/mnist")
    assert page.index("the paper\u2019s 60k/10k protocol") < page.index("MNIST-10k, fully connected")
    assert "digits" in page and "needs mnist data" not in page  # the shared data has all of MNIST
    assert page.count("<img") >= 3  # Figure 1a on MNIST, MNIST-10k and digits


def test_pages_show_no_tool_output_machine_path_or_library_key(built_book):
    for name in NOTEBOOKS:
        page = html(built_book, f"book/generated/{name}")
        for leak in ("/tmp/", "/work/", "/home/", "/root/", "site-packages", "Warning:"):
            assert leak not in page, (name, leak)
        tables = "".join(re.findall(r"<table.*?</table>", page, re.DOTALL))
        for key in ("backward_That", "forward_That", "unhinged_bn", "sigmoid_bn", "bootstrap_soft"):
            assert f">{key}<" not in tables, (name, key)


def test_the_injected_parameters_are_folded(built_book):
    for name in NOTEBOOKS:
        notebook = json.loads((built_book / "book" / "generated" / f"{name}.ipynb").read_text())
        injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "hide-cell" in injected[0]["metadata"]["tags"], name
        assert "tag_hide-cell" in html(built_book, f"book/generated/{name}"), name


def test_status_page_lists_every_table_2_cell(built_book):
    page = html(built_book, "book/generated/status")
    for key, experiment in training.EXPERIMENTS.items():
        assert key in page
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.DOTALL)
    table2 = [r for r in rows if "Table 2" in r]
    in_paper = [e for e in training.EXPERIMENTS.values() if e.paper_block]
    assert len(table2) == len(in_paper) * len(METHODS) * 4
    beyond = [r for r in rows if "beyond the paper" in r]  # CIFAR-10N: 10 methods x 3 human label sets
    assert len(beyond) == sum(len(e.settings) for e in training.EXPERIMENTS.values() if not e.paper_block) * len(METHODS)


CDN_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
LOCAL_MATHJAX = REPO / ".venv" / "mathjax" / "es5" / "tex-mml-chtml.js"


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium and a local MathJax 3, or skip naming what is absent."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (make browser installs it where apt-get can)")
    if not LOCAL_MATHJAX.is_file():
        pytest.skip(f"no local MathJax 3 at {LOCAL_MATHJAX} (make browser fetches it with npm)")
    return browser


def render(browser: str, page: Path, flags: list[str]) -> subprocess.CompletedProcess:
    """Open a copy of ``page`` that loads the local MathJax, with Chromium ``flags``."""
    local = page.with_name(page.stem + ".local-mathjax.html")
    text = page.read_text()
    assert CDN_MATHJAX in text, f"{page.name} no longer loads MathJax from {CDN_MATHJAX}"
    local.write_text(text.replace(CDN_MATHJAX, LOCAL_MATHJAX.as_uri()))
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--allow-file-access-from-files", "--virtual-time-budget=20000", "--window-size=1280,1600",
         *flags, local.as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    )


@pytest.mark.parametrize("page", ["book/intro", "book/theory"])
def test_pages_render_in_chromium_with_typeset_math(built_book, chromium, tmp_path, page):
    """The landing page (``index.html`` redirects to the introduction) and the
    theory chapter: a screenshot that is not blank, every formula typeset."""
    assert "book/intro.html" in html(built_book, "index")
    path = built_book / "_build" / "html" / f"{page}.html"
    shot = tmp_path / "page.png"
    render(chromium, path, [f"--screenshot={shot}"])
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1280)
    inked = (pixels < 200).mean()  # text, figures and rules against the white page
    assert 0.01 < inked < 0.6, f"{page}: {inked:.1%} of the screenshot is dark"
    dom = render(chromium, path, ["--dump-dom"]).stdout
    math = len(re.findall(r'class="math notranslate nohighlight"', path.read_text()))
    typeset = dom.count("<mjx-container")
    assert "<mjx-merror" not in dom, f"{page}: MathJax reports a TeX error"
    assert typeset >= math, f"{page}: {typeset} formulas typeset of {math}"
    if page == "book/theory":
        assert math > 50


WIDTH_PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  let worst = -1e9, count = 0;
  for (const table of document.querySelectorAll(".cell_output table")) {
    const box = table.closest(".cell_output");
    worst = Math.max(worst, table.getBoundingClientRect().width - box.clientWidth);
    count += 1;
  }
  document.body.setAttribute("data-tables", String(count));
  document.body.setAttribute("data-overflow", String(Math.round(worst)));
}, 1000));
</script>"""


def table_overflow(browser: str, page: Path) -> tuple[int, int]:
    """(tables, pixels by which the widest result table passes its cell's width)."""
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000",
         "--window-size=1280,1600", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=180, check=True).stdout
    tables = re.search(r'data-tables="(\d+)"', dom)
    overflow = re.search(r'data-overflow="(-?\d+)"', dom)
    assert tables and overflow, "the width probe did not run"
    return int(tables[1]), int(overflow[1])


def test_result_tables_fit_the_page_width(built_book, chromium):
    """The comparison chapter's Table 2 blocks, at a laptop's window width, need no
    sideways scrolling."""
    tables, overflow = table_overflow(chromium, built_book / "_build" / "html" / "book" / "generated" /
                                      "comparison.html")
    assert tables >= len(training.EXPERIMENTS)
    assert overflow <= 1, f"the widest table is {overflow} px wider than the page's content"


def test_the_your_data_chapter_shows_the_library_loop_in_full(built_book):
    """The chapter includes training.fit's source from the library (literalinclude), not a copy."""
    page = html(built_book, "book/generated/your_dataset")
    assert "best_state" in page and "lr_scheduler" in page and "_mean_loss" in page


PROGRESS_NOTEBOOK = '''# %% tags=["parameters"]
profile = "smoke"

# %%
import time

from tqdm import tqdm

for _ in tqdm(range(30), desc="decoding cifar10-jpg.tar.gz", unit="img"):  # tqdm's default
    time.sleep(0.01)
for _ in tqdm(range(30), desc="epochs", disable=False, leave=True):  # a call with progress=True
    time.sleep(0.01)
print(f"{profile}: done")
'''


def test_executed_notebooks_show_no_progress_bars(tmp_path, monkeypatch):
    """A notebook that draws tqdm bars, executed as the book's chapters are:
    its outputs hold what it prints, and no bar."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", REPO / "book" / "execute_notebooks.py")
    executor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(executor)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "progress.py").write_text(PROGRESS_NOTEBOOK)
    monkeypatch.setattr(executor, "ROOT", tmp_path)
    for key in executor.KERNEL_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    executor.execute("progress", tmp_path, {"profile": "smoke"}, progress=False)
    notebook = json.loads((tmp_path / "progress.ipynb").read_text())
    outputs = [json.dumps(output, ensure_ascii=False)  # bar characters as they are, not \u escapes
               for cell in notebook["cells"] for output in cell.get("outputs", [])]
    assert any("smoke: done" in text for text in outputs)
    for text in outputs:
        for bar in ("it/s", "img/s", "█", "▏", "|##", "decoding", "epochs", "%|"):
            assert bar not in text, (bar, text[:300])
    assert not set(executor.KERNEL_ENVIRONMENT) & set(os.environ)  # this process's bars stay on
