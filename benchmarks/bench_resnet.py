"""Training throughput of the CIFAR ResNets: our trainer against a plain PyTorch loop.

Usage (GPU): python benchmarks/bench_resnet.py --device cuda --depths 14 32 44 --steps 60 --runs 4 8 16 [--compile]
Usage (CPU check of the code path): python benchmarks/bench_resnet.py --device cpu --steps 2 --batch 16

"Plain loop": one run, fp32, contiguous memory format, a ``DataLoader`` over
uint8 images with torchvision transforms (4-pixel padded random crop,
horizontal flip, per-pixel mean subtraction) in worker processes, images
copied to the device every batch. "Ours": :func:`losscorrection.training.train_group`
on ``runs`` models at once, either stepped in turn (``modules``) or as one
network of grouped convolutions (``grouped``), with the images resident on the
device, batched augmentation on the device, channels-last and bfloat16
autocast on CUDA.
Both train pre-activation ResNets on 45,000-image-shaped synthetic CIFAR data
(throughput does not depend on pixel values). Prints images per second, the
speed-up and the projected wall time of one 120-epoch run; writes
``benchmarks/out/resnet_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from losscorrection import data, losses, models, training
from losscorrection.results import device_description

TRAIN_IMAGES, EPOCHS = 45_000, 120


class UInt8Images(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), self.y[i]


def synthetic(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
            torch.randint(0, 10, (n,), generator=gen))


def plain_loop(depth: int, x, y, steps: int, batch: int, device: torch.device, workers: int) -> float:
    """Images per second of the textbook single-run loop."""
    mean = data.pixel_mean(x)
    transform = v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
        v2.Lambda(lambda img: img.float() / 255 - mean),
    ])
    loader = DataLoader(UInt8Images(x, y, transform), batch_size=batch, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = models.build_model(f"resnet{depth}", 10).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step(images, labels):
        loss = losses.cross_entropy(model(images.to(device, non_blocking=True)), labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    batches = iter(loader)
    step(*next(batches))  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


MODES = ("modules", "grouped", "grouped, compiled")


def ours(depth: int, x, y, steps: int, batch: int, runs: int, device: torch.device, mode: str) -> float:
    """Images per second (summed over runs) of the trainer's path: one epoch of
    ``steps`` batches for each of ``runs`` models (validation pass included),
    as modules stepped in turn, as one grouped network, or as one grouped
    network whose forward pass goes through ``torch.compile`` (the warm-up
    epoch pays the compilation)."""
    n = steps * batch
    modules = []
    for k in range(runs):
        torch.manual_seed(k)
        modules.append(models.build_model(f"resnet{depth}", 10))
    runtime = training.Runtime(device, bf16=device.type == "cuda")
    stack = (training.ModuleRuns(modules, runtime) if mode == "modules"
             else training.GroupedRuns(modules, runtime, compile=mode == "grouped, compiled"))
    group = training.GroupData(
        x[:n].to(device), x[n:n + batch].to(device), x[n:n + batch].to(device), y[n:n + batch].to(device),
        10, pixel_mean=data.pixel_mean(x).to(device), augment=True,
    )
    y_train = y[:n].to(device).expand(runs, -1).contiguous()
    y_val = y[n:n + batch].to(device).expand(runs, -1).contiguous()
    schedule = training.Schedule("sgd", 0.01, 1, batch_size=batch, momentum=0.9, weight_decay=1e-4)
    warm = training.Schedule("sgd", 0.01, 1, batch_size=batch)
    training.train_group(stack, "cross_entropy", group, y_train[:, :batch], y_val, None, warm,
                         list(range(runs)), progress=False)
    _sync(device)
    started = time.perf_counter()
    training.train_group(stack, "cross_entropy", group, y_train, y_val, None, schedule,
                         list(range(runs)), progress=False)
    _sync(device)
    return runs * n / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--depths", type=int, nargs="+", default=[14, 32, 44])
    parser.add_argument("--steps", type=int, default=60, help="timed batches per measurement")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--runs", type=int, nargs="+", default=[4, 8, 16],
                        help="models trained at once by our path (one measurement each)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the plain loop")
    parser.add_argument("--compile", action="store_true", help="also measure the grouped network compiled")
    args = parser.parse_args()
    device = torch.device(args.device)
    x, y = synthetic((args.steps + 2) * args.batch)
    rows = []
    for depth in args.depths:
        plain = plain_loop(depth, x, y, args.steps, args.batch, device, args.workers)
        print(f"ResNet-{depth}: plain loop {plain:8.0f} img/s; 120 epochs: "
              f"{EPOCHS * TRAIN_IMAGES / plain / 3600:.2f} h per run", flush=True)
        for runs in args.runs:
            for mode in MODES if args.compile else MODES[:2]:
                fast = ours(depth, x, y, args.steps, args.batch, runs, device, mode)
                rows.append(dict(
                    depth=depth, runs=runs, mode=mode, plain_images_per_s=plain, ours_images_per_s=fast,
                    speedup=fast / plain, plain_hours_per_run=EPOCHS * TRAIN_IMAGES / plain / 3600,
                    ours_hours_per_run=EPOCHS * TRAIN_IMAGES / fast / 3600,
                ))
                print(f"  ours, {runs:2d} runs as {mode}: {fast:8.0f} img/s, x{fast / plain:.2f}; "
                      f"{rows[-1]['ours_hours_per_run']:.3f} h per run", flush=True)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"resnet_{device.type}.json").write_text(json.dumps(
        {"device": device_description(device), "torch": torch.__version__, "steps": args.steps,
         "batch": args.batch, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
