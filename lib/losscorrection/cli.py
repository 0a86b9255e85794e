"""Command line: ``losscorrection run | sweep | study | table | list``.

Examples::

    losscorrection run mnist10k_fc --method forward_That --noise asymmetric --rate 0.2 --runs 5
    losscorrection sweep mnist10k_fc --profile paper            # a Table 2 block
    losscorrection sweep mnist10k_fc --figure --profile quick   # a Figure 1 panel
    losscorrection sweep cifar10jpg_resnet14 --with-figure --methods backward_T --device cuda
    losscorrection sweep cifar10jpg_resnet14 --time-limit 9        # stop cleanly within 9 min; re-run continues
    losscorrection sweep imdb_embedding --jobs 2                # two processes, one thread each
    losscorrection sweep cifar10jpg_resnet14 --executor ray --address HEAD:6379   # one Ray task per group
    losscorrection table mnist10k                               # ours next to the paper
    losscorrection study jpeg-penalty                           # lossless vs JPEG, 4,000 images
    losscorrection study image-dependence                       # CIFAR-10N's labels vs its images

Bad arguments and missing data end with one line on stderr and exit status 2; a
training stopped by ``--time-limit`` with exit status 3 (finished groups stored,
the unfinished one checkpointed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch

from . import training
from .training.executors import EXECUTORS, ExecutorError, RayExecutor
from .results import METHODS, NOISES, ResultStore, compare_with_paper
from .store import rate_key

__all__ = ["main"]


class UsageError(Exception):
    """A bad command line, reported in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate must be a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"rate must lie in [0, 1), got {value}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help=f"one of: {', '.join(training.EXPERIMENTS)} (or a unique prefix)")
    parser.add_argument("--profile", choices=training.PROFILES, default="paper")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--data-root", default=None, help="data folder (default: $LOSSCORR_DATA or ./data)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--runs", type=int, default=None, help="runs per cell (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    parser.add_argument("--lr", type=float, default=None,
                        help="override the learning rate (stored under the profile label <profile>:lr=<lr>)")
    parser.add_argument("--weight-decay-scope", choices=("kernels", "all"), default=None,
                        help="decay the kernels only (the released code, the default) or every parameter "
                             "(stored under <profile>:weight_decay_scope=all)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a network argument that differs from the experiment's, e.g. output_init=uniform "
                             "(repeatable; stored under the profile label <profile>:KEY=VALUE)")
    parser.add_argument("--recipe", choices=tuple(training.RECIPES), default=None,
                        help="how an image experiment trains (default: the experiment's own). released: as the "
                             "authors' released code (epoch length, augmentation, pixels, clipped cross-entropy, "
                             "selection, network; the CIFAR-10/100 experiments' own); library: this library's "
                             "(pad-and-crop, x/255, one pass per epoch; CIFAR-10N's own). Another recipe than "
                             "the experiment's is stored under <profile>:recipe=<name>")
    parser.add_argument("--precision", choices=training.PRECISIONS, default="auto",
                        help="auto: bf16 autocast for the ResNets and the LSTM on CUDA, and for all but the "
                             "IMDB embedding model on CPUs with native bf16 arithmetic")
    parser.add_argument("--max-group", type=int, default=32,
                        help="most runs trained together as one batched model (default 32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per process (default: torch's, or the cores shared among --jobs)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the noise settings in this many processes at once (default 1); on a "
                             "CPU, small models train faster as 2 processes of 1 thread than 1 of 2")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                        help="start no epoch that would end later than this; the unfinished group is "
                             "checkpointed and the same command continues it (exit status 3)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: train in this process (or --jobs processes); ray: one Ray task per group "
                             "of runs (one GPU, or --threads CPUs, each), results stored by this process")
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="--executor ray: the Ray cluster's head (default: $RAY_ADDRESS, else a Ray "
                             "instance on this machine); on several machines, --results-dir must be on a "
                             "filesystem they share")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="losscorrection", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="one cell (method x noise x rate), --runs times")
    _common(run)
    run.add_argument("--method", action="append", required=True, choices=METHODS, help="repeatable")
    run.add_argument("--noise", required=True, choices=NOISES)
    run.add_argument("--rate", type=_rate, default=0.0)
    sweep = sub.add_parser("sweep", help="a Table 2 block (default) or a Figure 1 panel (--figure)")
    _common(sweep)
    grid = sweep.add_mutually_exclusive_group()
    grid.add_argument("--figure", action="store_true", help="the Figure 1 grid instead of Table 2")
    grid.add_argument("--with-figure", action="store_true",
                      help="the Table 2 block and the Figure 1 grid together: a method's cells of both "
                           "train as one group")
    sweep.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                       help="only these methods (default: all of the block or grid)")
    study = sub.add_parser("study", help="beyond the paper: jpeg-penalty or image-dependence (CIFAR-10N)")
    study.add_argument("name", choices=("jpeg-penalty", "image-dependence"))
    study.add_argument("--data-root", default=None, help="data folder (default: $LOSSCORR_DATA or ./data)")
    study.add_argument("--results-dir", default="results")
    study.add_argument("--device", default="auto", help="auto, cpu or cuda")
    study.add_argument("--profile", choices=training.PROFILES, default="paper", help="jpeg-penalty: the schedule")
    study.add_argument("--runs", type=int, default=3, help="jpeg-penalty: runs per version (default 3)")
    study.add_argument("--lr", type=float, default=None, help="jpeg-penalty: override the learning rate")
    study.add_argument("--epochs", type=int, default=None,
                       help="jpeg-penalty: override the profile's epochs; image-dependence: the probes' (default 3)")
    study.add_argument("--permutations", type=int, default=1000, help="image-dependence: null draws (default 1000)")
    study.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    table = sub.add_parser("table", help="our results next to the paper's Table 2")
    table.add_argument("experiment")
    table.add_argument("--results-dir", default="results")
    table.add_argument("--profile", choices=training.PROFILES, default="paper")
    sub.add_parser("list", help="the experiments")
    return parser


def _cells(args, experiment: training.Experiment) -> list[training.Cell]:
    runs = args.runs or training.profile_settings(experiment, args.profile).runs
    if runs < 1:
        raise UsageError(f"--runs must be at least 1, got {runs}")
    if args.max_group < 1:
        raise UsageError(f"--max-group must be at least 1, got {args.max_group}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if args.jobs < 1 or args.threads is not None and args.threads < 1:
        raise UsageError(f"--jobs and --threads must be at least 1, got {args.jobs} and {args.threads}")
    if args.executor == "ray" and args.jobs > 1:
        raise UsageError("--jobs runs local processes; with --executor ray every group of runs is a Ray task")
    if args.executor != "ray" and args.address is not None:
        raise UsageError("--address names a Ray cluster: it needs --executor ray")
    if args.time_limit is not None and not args.time_limit >= 0:
        raise UsageError(f"--time-limit must be a number of minutes, at least 0, got {args.time_limit}")
    if args.command == "run":
        rate = 0.0 if args.noise == "none" else args.rate
        return [training.Cell(m, args.noise, rate, k) for m in args.method for k in range(runs)]
    if (args.figure or args.with_figure) and not experiment.figure:
        raise UsageError(f"{experiment.key} has no Figure 1 panel")
    cells = [] if args.figure else training.table_cells(experiment, runs)
    if args.figure or args.with_figure:
        cells += training.figure_cells(runs)
    cells = list(dict.fromkeys(cells))  # the Figure 1 cells that are Table 2 cells too, once
    return [c for c in cells if args.methods is None or c.method in args.methods]


def _model_options(pairs: list[str]) -> dict:
    """``["dropout=0.5", "output_init=he_normal"]`` -> ``{"dropout": 0.5, "output_init": "he_normal"}``."""
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--model-option takes KEY=VALUE, got {pair!r}")
        for kind in (int, float):
            try:
                options[key] = kind(text)
                break
            except ValueError:
                options[key] = text
    return options


def split_by_setting(cells: list[training.Cell], parts: int) -> list[list[training.Cell]]:
    """``cells`` cut into at most ``parts`` lists of similar length that share no
    noise setting, so each list trains its own stage-1 runs for T̂ (largest
    settings first, each to the shortest list)."""
    by_setting: dict[tuple[str, str], list[training.Cell]] = {}
    for cell in cells:
        by_setting.setdefault((cell.noise, rate_key(cell.rate)), []).append(cell)
    lists: list[list[training.Cell]] = [[] for _ in range(min(parts, len(by_setting)))]
    for setting_cells in sorted(by_setting.values(), key=len, reverse=True):
        min(lists, key=len).extend(setting_cells)
    return lists


def _train_part(experiment: str, cells: list[training.Cell], threads: int | None, options: dict) -> pd.DataFrame:
    """Train ``cells`` in this process with ``threads`` CPU threads (a ``--jobs`` worker)."""
    if threads is not None:
        torch.set_num_threads(threads)
    return training.run_cells(experiment, cells, **options)


def _train(args) -> None:
    experiment = training.get_experiment(args.experiment)
    cells = _cells(args, experiment)
    options = dict(profile=args.profile, data_root=args.data_root, device=args.device,
                   results_dir=args.results_dir, epochs=args.epochs, lr=args.lr,
                   weight_decay_scope=args.weight_decay_scope, precision=args.precision,
                   model_options=_model_options(args.model_option), recipe=args.recipe,
                   max_runs_per_group=args.max_group, progress=not args.quiet,
                   time_limit=None if args.time_limit is None else 60 * args.time_limit)
    started = time.perf_counter()
    parts = [cells] if args.executor == "ray" else split_by_setting(cells, args.jobs)
    if args.executor == "ray":
        rows = training.run_cells(experiment.key, cells, executor=RayExecutor(args.address, args.threads), **options)
    elif len(parts) <= 1:
        rows = _train_part(experiment.key, cells, args.threads, options)
    else:
        threads = args.threads or max(1, (os.cpu_count() or 1) // len(parts))
        with ProcessPoolExecutor(len(parts), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_train_part, experiment.key, part, threads,
                                   {**options, "progress": options["progress"] and i == 0})
                       for i, part in enumerate(parts)]
            rows = pd.concat([f.result() for f in futures], ignore_index=True)
    elapsed = time.perf_counter() - started
    requested = {(c.method, c.noise, rate_key(c.rate), c.run) for c in cells}
    trained = sum((m, n, rate_key(r), k) in requested for m, n, r, k in
                  zip(rows.get("method", []), rows.get("noise", []), rows.get("rate", []), rows.get("run", [])))
    extra = len(rows) - trained
    stage_one = f", plus {extra} stage-1 runs for T̂" if extra else ""
    processes = f" by {len(parts)} processes" if len(parts) > 1 else " by Ray tasks" if args.executor == "ray" else ""
    print(f"{trained} new runs of {len(cells)} requested ({len(cells) - trained} already stored{stage_one}) "
          f"in {elapsed:.1f} s{processes} -> {ResultStore(args.results_dir).path(experiment.key)}")


def _study(args) -> None:
    optional = [n for n in (args.epochs, args.threads) if n is not None]
    if min(args.runs, args.permutations, *optional) < 1:
        raise UsageError("--runs, --permutations, --epochs and --threads must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    options = dict(device=args.device, results_dir=args.results_dir, progress=not args.quiet)
    if args.name == "jpeg-penalty":
        rows = training.jpeg_penalty(args.data_root, runs=args.runs, profile=args.profile, epochs=args.epochs,
                                     lr=args.lr, **options)
        label = rows.attrs["profile"]
        summary = training.jpeg_penalty_summary(rows, profile=label)
        print(f"test accuracy on the same test images, lossless and as JPEG ({label}):")
        for version, row in summary.iterrows():
            print(f"  {version:9s} {row['mean']:.2f} ± {row['std']:.2f} ({int(row['runs'])} runs)")
        if "gap" in summary.attrs:
            print(f"  JPEG penalty: {summary.attrs['gap']:.2f} ± {summary.attrs['gap_se']:.2f} points")
    else:
        record = training.cifar10n_image_dependence(args.data_root, epochs=args.epochs or 3,
                                                    permutations=args.permutations, **options)
        print(f"probe accuracy on unseen halves: {', '.join(f'{a:.1f} %' for a in record['probe_accuracy'])}")
        for name, test in record["label_sets"].items():
            print(f"  {name:8s} statistic {test['statistic']:.4f}, null {test['null_mean']:.4f} ± "
                  f"{test['null_std']:.4f}, z {test['z']:.1f}, p {test['p_value']:.4f}")
        print(f"-> {Path(args.results_dir) / training.IMAGE_DEPENDENCE_FILE}")


def _table(args) -> None:
    experiment = training.get_experiment(args.experiment)
    frame = ResultStore(args.results_dir).load(experiment.key)
    frame = frame[frame["profile"] == args.profile]
    in_block = [any(n == noise and abs(r - rate) < 1e-9 for noise, rate in experiment.settings)
                for n, r in zip(frame["noise"], frame["rate"])]
    frame = frame.loc[pd.Series(in_block, index=frame.index, dtype=bool)]  # the Table 2 columns only
    print(f"{experiment.description} — profile {args.profile}, ours: mean ± std (runs)")
    if experiment.paper_block and experiment.paper_block != experiment.key:
        print(f"paper column: the published '{experiment.paper_block}' block, {experiment.paper_note}")
    if frame.empty:
        print(f"no {args.profile}-profile results yet in {args.results_dir}/{experiment.key}.csv")
    table = compare_with_paper(frame, experiment.paper_block, settings=list(experiment.settings))
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.to_string())


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            for key, experiment in training.EXPERIMENTS.items():
                print(f"{key:22s} {experiment.description}")
        elif args.command == "table":
            _table(args)
        elif args.command == "study":
            _study(args)
        else:
            _train(args)
    except (UsageError, ValueError, FileNotFoundError, training.GroupBusy, ExecutorError) as err:
        print(f"losscorrection: error: {err}", file=sys.stderr)
        return 2
    except training.TimeLimitReached as stop:
        print(f"losscorrection: {stop}; finished runs are stored and the unfinished group checkpointed "
              f"({Path(args.results_dir) / training.CHECKPOINT_FOLDER}), re-run to continue (commit that "
              "folder to continue in another clone)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("losscorrection: interrupted; finished runs are stored and unfinished ones checkpointed "
              f"({Path(args.results_dir) / training.CHECKPOINT_FOLDER}), re-run to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
