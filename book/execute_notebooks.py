"""Execute the book's notebooks: jupytext source -> papermill run -> ``book/generated``.

    python book/execute_notebooks.py --profile paper            # what `make book` runs
    python book/execute_notebooks.py --profile smoke --only mnist

Every notebook in ``notebooks/`` (jupytext percent format) is converted to
``.ipynb`` and executed with papermill. Each notebook is passed those of
``profile``, ``device``, ``results_dir``, ``reuse_results``, ``budget_minutes``
(and ``runs`` / ``epochs`` when given) that its parameters cell declares; the
data root reaches the kernels as an absolute ``$LOSSCORR_DATA``. The executed notebooks are what
``jupyter-book build`` renders (execution is off in ``_config.yml``). Any
error in a cell stops the build with a non-zero exit status. Progress bars
show on the command line, never in the executed notebooks (see
:data:`KERNEL_ENVIRONMENT`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jupytext
import nbformat
import papermill
from tqdm import tqdm

from losscorrection.data import DATA_ENV

ROOT = Path(__file__).resolve().parents[1]

# Book order; each name is notebooks/<name>.py, rendered from book/generated/<name>.ipynb.
NOTEBOOKS = (
    "theory", "estimator", "mnist", "imdb", "cifar", "cifar10n", "clothing1m", "comparison", "status",
    "your_dataset",
)


# What the notebook kernels run with, so that no tqdm bar reaches a page (tqdm >= 4.66 reads
# its defaults from TQDM_* variables): TQDM_DISABLE turns off the bars that take tqdm's
# default, and TQDM_DELAY postpones those a call asks for (a library function with
# progress=True) beyond any chapter's run time, so that they never print either. This
# process's own bars are unaffected: tqdm read the variables when it was imported.
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "TQDM_DELAY": str(10**9)}


@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """:data:`KERNEL_ENVIRONMENT` set for the kernels started inside the block,
    the previous values restored after it."""
    saved = {key: os.environ.get(key) for key in KERNEL_ENVIRONMENT}
    os.environ.update(KERNEL_ENVIRONMENT)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(name: str, output_dir: Path, parameters: dict, progress: bool) -> float:
    """Execute one notebook; return its wall time in seconds."""
    source = ROOT / "notebooks" / f"{name}.py"
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    unexecuted = output_dir / f".{name}.source.ipynb"
    jupytext.write(notebook, unexecuted)
    declared = papermill.inspect_notebook(str(unexecuted))  # pass each notebook only its own parameters
    started = time.perf_counter()
    try:
        with kernel_environment():
            papermill.execute_notebook(
                str(unexecuted), str(output_dir / f"{name}.ipynb"),
                parameters={k: v for k, v in parameters.items() if k in declared},
                kernel_name="python3", cwd=str(ROOT), progress_bar=progress, log_output=False,
            )
    finally:
        unexecuted.unlink(missing_ok=True)
    fold_injected_parameters(output_dir / f"{name}.ipynb")
    return time.perf_counter() - started


def fold_injected_parameters(path: Path) -> None:
    """Fold the cell papermill injects (the values this build used) behind a
    toggle, so that a page shows its parameters once: the notebook's own
    ``parameters`` cell, with the build's values one click away."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("smoke", "quick", "paper"), default="paper")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--results-dir", default=None,
                        help="default: results/ for the paper profile (the committed store), "
                             "_build/results-<profile> for the others")
    parser.add_argument("--output-dir", default=str(ROOT / "book" / "generated"))
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--budget-minutes", type=float, default=5.0,
                        help="a chapter trains its missing cells only when they are estimated to take at "
                             "most this long (default 5)")
    parser.add_argument("--no-reuse", action="store_true", help="retrain instead of reading stored results")
    parser.add_argument("--only", action="append", choices=NOTEBOOKS, help="repeatable")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    results_dir = args.results_dir or (
        ROOT / "results" if args.profile == "paper" else ROOT / "_build" / f"results-{args.profile}"
    )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The notebooks run in the repository root: a store inside it is passed as a
    # relative path, which is also what the rendered parameter cell shows.
    results_dir = Path(results_dir).resolve()
    if results_dir.is_relative_to(ROOT):
        results_dir = results_dir.relative_to(ROOT)
    # The kernels run in the repository root: a relative data root (such as
    # $LOSSCORR_DATA=../shared/data) is made absolute for them here, through the
    # environment, so that the rendered parameter cells show no machine path.
    data_root = args.data_root or os.environ.get(DATA_ENV)
    if data_root:
        os.environ[DATA_ENV] = str(Path(data_root).expanduser().resolve())
    parameters = dict(
        profile=args.profile, device=args.device, results_dir=str(results_dir), reuse_results=not args.no_reuse,
        runs=args.runs, epochs=args.epochs, progress=False, budget_minutes=args.budget_minutes,
    )
    names = args.only or NOTEBOOKS
    total = 0.0
    for name in tqdm(names, desc="notebooks", disable=args.quiet):
        try:
            seconds = execute(name, output_dir, parameters, progress=not args.quiet)
        except papermill.PapermillExecutionError as err:
            print(f"notebook {name} failed: {err.ename}: {err.evalue}", file=sys.stderr)
            return 1
        total += seconds
        print(f"{name}: {seconds:.1f} s", flush=True)
    print(f"executed {len(names)} notebooks ({args.profile} profile) in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
