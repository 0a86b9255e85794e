"""Seconds per model-epoch of the IMDB word-embedding model: layer by layer, fused, compiled.

Usage: python benchmarks/bench_imdb_embedding.py [--runs 8] [--steps 60] [--threads 2 1]

Both paths train K runs of the §5.1 embedding model (vocabulary 5,000, 400
tokens, 50 dimensions, spatial dropout 0.8) with
:func:`losscorrection.training.train_group` on synthetic reviews, AdaGrad and
mini-batches of 128. "layer by layer" is the model as the released code writes
it (embedding, spatial dropout, ReLU, flatten, dense: each step materialises
the ``(128, 400, 50)`` activation and its gradients); "fused" is
:class:`losscorrection.models.EmbeddingClassifier` through its PyTorch
formulation, which gathers the activation in chunks and skips the leading
padding (:func:`losscorrection.models.gathered.gathered_linear`);
"compiled" is the same model through the compiled CPU kernel
(:mod:`losscorrection.models.native`), its default. The synthetic reviews
are front-padded to 400 tokens with lengths like the IMDB training set's
(log-normal, median 174 words, 13 % cut at 400; 48 % of all positions are
padding). Each measurement times ``--steps`` training steps per run plus a
validation pass and scales to the paper's epoch of 22,500 training reviews
(176 steps) and 2,500 validation reviews. The last rows train the fused and
the compiled model in two processes of one thread at once
(``losscorrection sweep --jobs 2``) and give the machine's throughput as
seconds per model-epoch. Prints a table and writes ``benchmarks/out/imdb_embedding.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from losscorrection import models, training
from losscorrection.results import device_description

VOCAB, LENGTH, BATCH, PAPER_TRAIN, PAPER_VAL = 5000, 400, 128, 22_500, 2_500


class LayerByLayer(models.EmbeddingClassifier):
    """The embedding model as a composition of its layers (the released code's form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.spatial_dropout(self.embedding(x)))
        return self.output(h.flatten(1))


class FusedPyTorch(models.EmbeddingClassifier):
    """The model through its chunked PyTorch formulation, not the compiled kernel."""

    native_kernel = False


PATHS = {"layer by layer": LayerByLayer, "fused": FusedPyTorch, "compiled": models.EmbeddingClassifier}


def seconds_per_model_epoch(model_class, runs: int, steps: int) -> float:
    """Seconds per model-epoch (22,500 training and 2,500 validation reviews) of ``runs`` runs."""
    gen = torch.Generator().manual_seed(0)
    n_train, n_val = steps * BATCH, PAPER_VAL * steps * BATCH // PAPER_TRAIN
    x = torch.randint(3, VOCAB, (n_train + n_val + 1, LENGTH), generator=gen)
    words = torch.exp(torch.randn(len(x), generator=gen) * 0.72 + 5.16).clamp(1, LENGTH).round()
    x[torch.arange(LENGTH) < LENGTH - words[:, None]] = 0  # Keras' front padding
    y = torch.randint(0, 2, (n_train + n_val + 1,), generator=gen)
    data = training.GroupData(x[:n_train], x[n_train:-1], x[-1:], y[-1:], 2)
    modules = []
    for k in range(runs):
        torch.manual_seed(k)
        modules.append(model_class())
    stack = training.ModuleRuns(modules, training.Runtime("cpu"), dropout_seeds=list(range(runs)))
    started = time.perf_counter()
    training.train_group(
        stack, "cross_entropy", data, y[:n_train].expand(runs, -1).contiguous(),
        y[n_train:-1].expand(runs, -1).contiguous(), None,
        training.Schedule("adagrad", 0.01, 1), list(range(runs)), progress=False,
    )
    return (time.perf_counter() - started) / runs * PAPER_TRAIN / n_train


def _one_thread(path: str, runs: int, steps: int) -> float:
    torch.set_num_threads(1)
    return seconds_per_model_epoch(PATHS[path], runs, steps)


def two_processes(path: str, runs: int, steps: int) -> float:
    """Seconds per model-epoch of the machine with two one-thread processes training at once."""
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        each = list(pool.map(_one_thread, [path, path], [runs, runs], [steps, steps]))
    return 1.0 / sum(1.0 / s for s in each)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="training steps per run and measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        seconds_per_model_epoch(models.EmbeddingClassifier, 1, 4)  # warm-up
        for name, cls in PATHS.items():
            rows.append({"threads": threads, "path": name,
                         "seconds_per_model_epoch": seconds_per_model_epoch(cls, args.runs, args.steps)})
    for name in ("fused", "compiled"):
        rows.append({"threads": "2 x 1", "path": f"{name}, 2 procs",
                     "seconds_per_model_epoch": two_processes(name, args.runs, args.steps)})
    reference = rows[0]["seconds_per_model_epoch"]
    print(f"device: {device_description(torch.device('cpu')).split(',')[0]}; {args.runs} runs, "
          f"torch {torch.__version__}; compiled: {models.native.status()}")
    print(f"{'threads':>7} {'path':>18} {'s / model-epoch':>16} {'speed-up':>9}")
    for r in rows:
        r["speedup"] = reference / r["seconds_per_model_epoch"]
        print(f"{r['threads']:>7} {r['path']:>18} {r['seconds_per_model_epoch']:>16.3f} {r['speedup']:>8.2f}x")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "imdb_embedding.json").write_text(json.dumps(
        {"device": device_description(torch.device("cpu")), "torch": torch.__version__,
         "runs": args.runs, "steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
