"""Model-epochs per second of the MNIST network: K runs batched vs one run at a time.

Usage: python benchmarks/bench_batched_mlp.py [--device cpu|cuda] [--epochs 2] [--ks 1 8 32] [--bf16]

"One run at a time" is the plain PyTorch loop: an ``nn.Module`` MLP (dropout 0.5),
AdaGrad, shuffled mini-batches of 128 and a validation pass per epoch. "Batched"
is :func:`losscorrection.training.train_group` on a :class:`StackedMLP` of K runs
(each with its own data order, dropout masks and labels); with ``--bf16`` each
K is measured again with the products under bfloat16 autocast. Both use 7,200
training and 800 validation MNIST-shaped inputs (the MNIST-10k split sizes).
Prints a table and writes ``benchmarks/out/batched_mlp_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from losscorrection import losses, models, training
from losscorrection.results import device_description

N_TRAIN, N_VAL, N_TEST, DIM, CLASSES = 7200, 800, 2000, 784, 10


def synthetic(device: torch.device) -> tuple[training.GroupData, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N_TRAIN + N_VAL + N_TEST, DIM, generator=gen)
    y = torch.randint(0, CLASSES, (x.shape[0],), generator=gen)
    data = training.GroupData(
        x[:N_TRAIN].to(device), x[N_TRAIN:N_TRAIN + N_VAL].to(device),
        x[N_TRAIN + N_VAL:].to(device), y[N_TRAIN + N_VAL:].to(device), CLASSES,
    )
    return data, y[:N_TRAIN].to(device), y[N_TRAIN:N_TRAIN + N_VAL].to(device)


def one_at_a_time(data, y_train, y_val, epochs: int, device: torch.device) -> float:
    """Seconds per model-epoch of the plain single-run loop."""
    torch.manual_seed(0)
    model = models.MLP(DIM, CLASSES).to(device)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.01, eps=1e-6)
    _sync(device)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(N_TRAIN, device=device).split(128):
            loss = losses.cross_entropy(model(data.x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            losses.cross_entropy(model(data.x_val), y_val).item()
    _sync(device)
    return (time.perf_counter() - started) / epochs


def batched(data, y_train, y_val, K: int, epochs: int, device: torch.device, bf16: bool = False) -> float:
    """Seconds per model-epoch of K runs trained together (products in bf16 with ``bf16``)."""
    modules = []
    for k in range(K):
        torch.manual_seed(k)
        modules.append(models.MLP(DIM, CLASSES))
    stack = training.StackedMLP(modules, list(range(K)), training.Runtime(device, bf16=bf16))
    schedule = training.Schedule("adagrad", 0.01, epochs)
    _sync(device)
    started = time.perf_counter()
    training.train_group(
        stack, "cross_entropy", data, y_train.expand(K, -1).contiguous(),
        y_val.expand(K, -1).contiguous(), None, schedule, list(range(K)), progress=False,
    )
    _sync(device)
    return (time.perf_counter() - started) / (epochs * K)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--bf16", action="store_true", help="also measure each K with bf16 autocast")
    args = parser.parse_args()
    device = torch.device(args.device)
    data, y_train, y_val = synthetic(device)
    one_at_a_time(data, y_train, y_val, 1, device)  # warm-up
    single = one_at_a_time(data, y_train, y_val, args.epochs, device)
    rows = [{"K": 1, "mode": "one run at a time", "model_epochs_per_s": 1 / single, "speedup": 1.0}]
    for K in args.ks:
        for bf16 in (False, True) if args.bf16 else (False,):
            seconds = batched(data, y_train, y_val, K, args.epochs, device, bf16)
            rows.append({"K": K, "mode": "batched, bf16" if bf16 else "batched", "model_epochs_per_s": 1 / seconds,
                         "speedup": single / seconds})
    print(f"device: {device_description(device)}")
    print(f"{'K':>4} {'mode':>18} {'model-epochs/s':>15} {'speed-up':>9}")
    for r in rows:
        print(f"{r['K']:>4} {r['mode']:>18} {r['model_epochs_per_s']:>15.2f} {r['speedup']:>8.2f}x")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"batched_mlp_{device.type}.json").write_text(json.dumps(
        {"device": device_description(device), "threads": torch.get_num_threads(),
         "torch": torch.__version__, "epochs": args.epochs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
