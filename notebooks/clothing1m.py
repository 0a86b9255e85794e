# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Clothing1M: real label noise (Table 3)
#
# Clothing1M (Xiao et al., CVPR 2015) is a collection of about one million
# clothing images from online shops, in 14 classes, whose labels were derived
# from the text around each image and are therefore noisy. A much smaller
# part was labelled by hand: about 50k clean training images, 14k for
# validation and 10k for testing. Some of the hand-labelled images also carry
# a noisy label, and on those images the noise can be *counted*: the fraction
# of clean class $i$ images whose noisy label is $j$ is an estimate of
# $T_{ij}$. The paper uses that estimate instead of Eq. 12–13.
#
# The paper's pipeline (its Table 3, rows 4 to 8), with a ResNet-50
# pre-trained on ImageNet, SGD with momentum 0.9, batch 32, learning rate
# $10^{-3}$ for 5 epochs then $10^{-4}$ for 5 epochs:
#
# | row | training data | loss | weight decay | augmentation |
# |---|---|---|---|---|
# | 4 | 1M noisy | cross-entropy | $10^{-3}$ | no |
# | 5 | 1M noisy | backward, $T$ from the overlap | $10^{-3}$ | no |
# | 6 | 1M noisy | forward, $T$ from the overlap | $10^{-3}$ | no |
# | 7 | 50k clean | cross-entropy | $5\cdot 10^{-2}$ | crops, flips |
# | 8 | row 6, then fine-tuned on 50k clean | cross-entropy | $5\cdot 10^{-2}$ | crops, flips |
#
# Clothing1M is distributed by its authors on request and is not on the
# machines this book is built on. Where it is missing, this chapter says so
# and runs the same code on a small **synthetic** data set written in
# Clothing1M's file layout, with label noise drawn from a known $T$, so that
# every step can be checked.

# %% tags=["parameters"]
profile = "paper"  # smoke | quick | paper
data_root = None  # default: $LOSSCORR_DATA, else ./data (Clothing1M in <root>/clothing1m/)
device = "auto"  # auto | cpu | cuda
epochs = None  # epochs per learning rate (None: the paper's 5)
results_dir = "results"  # ResNet-50 results: <results_dir>/clothing1m_resnet50.json
reuse_results = True  # False: retrain the ResNet-50 rows (only with train_resnet50)
train_resnet50 = False  # True: train rows 4-8 on the real Clothing1M (days of GPU time)
resnet50_weights = None  # path to torchvision's ImageNet ResNet-50 state_dict (needed for rows 4-8)
num_workers = 8  # data loader processes for the real images

# %%
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from losscorrection import data, estimation, losses, models, noise, report, results, training

sns.set_theme(style="whitegrid")
dev = training.resolve_device(device)
ROW_NAMES = {4: "cross-entropy (row 4)", 5: "backward (row 5)", 6: "forward (row 6)",
             7: "cross-entropy on 50k clean (row 7)", 8: "forward + fine-tuning on 50k (row 8)"}
TABLE3 = results.paper_table3()
PAPER_RESNET50 = {ROW_NAMES[row]: acc for row, acc in zip(TABLE3["row"], TABLE3["accuracy"]) if row in ROW_NAMES}

# %%
try:
    clothing = data.load_clothing1m(data_root)
    synthetic, missing = False, None
except data.MissingDataError as err:
    synthetic, missing = True, ", ".join(Path(m).name for m in err.missing)
if synthetic:
    display(Markdown(f"**Not run here: needs Clothing1M** ({missing} under `<data root>/clothing1m/`; "
                     "see the README's Data section). Everything below marked *synthetic* runs on "
                     "generated stand-in data."))
else:
    display(Markdown("Clothing1M found under the data root."))

# %% [markdown]
# ## A synthetic stand-in in Clothing1M's layout
#
# (Only used when the real data is missing.) The generator writes the
# official file layout into a temporary folder: JPEG images under
# `images/<d>/<dd>/<id>.jpg`, the label files `noisy_label_kv.txt` and
# `clean_label_kv.txt` (`<path> <label>` per line) and the four key lists.
# Each image is a tiny 32×32 picture whose colour depends on its clean class,
# so that a network has something to learn. The noise matrix is made up to
# resemble the kind of confusion Clothing1M has (similar garments swapped:
# knitwear and sweaters, jackets and down coats, ...): it is **not** the real
# Clothing1M matrix. The doubly labelled images play the role of the clean
# training set, as in the paper.

# %%
CONFUSIONS = {  # clean class -> classes its noisy label drifts to (indices of data.CLOTHING1M_CLASSES)
    0: [1, 12], 1: [0, 9], 2: [4], 3: [11], 4: [2, 5], 5: [4, 0], 6: [7], 7: [6, 8, 9],
    8: [7], 9: [7, 1], 10: [2, 3], 11: [3], 12: [0, 13], 13: [12],
}


def synthetic_transition(rng: np.random.Generator) -> np.ndarray:
    """Row i keeps a fraction in [0.55, 0.9]; 80% of the rest goes to the confusable classes."""
    c = len(data.CLOTHING1M_CLASSES)
    T = np.zeros((c, c))
    for i, targets in CONFUSIONS.items():
        keep = rng.uniform(0.55, 0.9)
        T[i] = 0.2 * (1 - keep) / (c - 1)
        T[i, targets] += 0.8 * (1 - keep) / len(targets)
        T[i, i] = keep
    return T / T.sum(axis=1, keepdims=True)


def write_synthetic_clothing1m(root: Path, sizes: dict, seed: int = 0) -> np.ndarray:
    """Write a Clothing1M-layout data set under `root`; return the T its noisy labels follow."""
    rng = np.random.default_rng(seed)
    c = len(data.CLOTHING1M_CLASSES)
    T = synthetic_transition(rng)
    palette = rng.uniform(40, 215, size=(c, 3))
    noisy_kv, clean_kv, lists = {}, {}, {name: [] for name in sizes}
    next_id = 0
    for part, n in sizes.items():
        clean = rng.integers(0, c, size=n)
        noisy_labels = noise.corrupt(clean, T, rng)
        for y, y_noisy in zip(clean, noisy_labels):
            key = f"images/{next_id % 10}/{next_id % 100:02d}/{next_id:07d}.jpg"
            next_id += 1
            pixels = palette[y] + rng.normal(0, 45, size=(32, 32, 3))
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / key, quality=90)
            lists[part].append(key)
            if part in ("noisy_train", "clean_train"):  # clean_train: the doubly labelled images
                noisy_kv[key] = int(y_noisy)
            if part != "noisy_train":
                clean_kv[key] = int(y)
    for name, kv in (("noisy_label_kv.txt", noisy_kv), ("clean_label_kv.txt", clean_kv)):
        (root / name).write_text("".join(f"{k} {v}\n" for k, v in kv.items()))
    for part, keys in lists.items():
        (root / f"{part}_key_list.txt").write_text("".join(f"{k}\n" for k in keys))
    (root / "category_names_eng.txt").write_text("\n".join(data.CLOTHING1M_CLASSES) + "\n")
    return T


if synthetic:
    SIZES = {"smoke": dict(noisy_train=700, clean_train=700, clean_val=128, clean_test=128),
             "quick": dict(noisy_train=2800, clean_train=2800, clean_val=512, clean_test=512),
             "paper": dict(noisy_train=5600, clean_train=7000, clean_val=1408, clean_test=1408)}[profile]
    synthetic_root = Path(tempfile.mkdtemp(prefix="clothing1m-synthetic-")) / "clothing1m"
    started = time.perf_counter()
    T_true = write_synthetic_clothing1m(synthetic_root, SIZES)
    clothing = data.load_clothing1m(synthetic_root.parent)
    display(Markdown(
        f"*Synthetic* Clothing1M written to a temporary folder in {time.perf_counter() - started:.1f} s "
        f"and read back with `data.load_clothing1m`: {len(clothing.noisy_train.paths):,} noisy-only "
        f"training images, {len(clothing.clean_train.paths):,} clean training images that also carry "
        f"a noisy label, {len(clothing.clean_val.paths):,} validation and "
        f"{len(clothing.clean_test.paths):,} test images ({profile} profile)."))

# %% [markdown]
# ## T from the doubly labelled images
#
# `data.clothing1m_overlap_transition` counts, over the clean training
# images that also carry a noisy label, how often clean class $i$ comes with
# noisy label $j$, and normalises each row. Only the clean *training* list is
# used (`split="train"`, the default): the clean validation and test images
# have noisy labels too, but counting them would let test labels into $T$.
# `split="all"` counts every doubly labelled image.

# %%
T_overlap = data.clothing1m_overlap_transition(clothing)
overlap = data.clothing1m_overlap_keys(clothing)
per_class = np.bincount([clothing.clean_labels[k] for k in overlap], minlength=clothing.num_classes)
label = "synthetic" if synthetic else "Clothing1M"
report.plot_transition_pair(
    T_true if synthetic else T_overlap, T_overlap if synthetic else None,
    ((f"known T ({label})",) if synthetic else ()) + (f"T counted on {len(overlap):,} doubly labelled images",),
    f"Clothing1M noise matrix ({label} data)", class_names=tuple(clothing.class_names))
plt.show()
text = (f"Doubly labelled images per clean class: {per_class.min()} to {per_class.max()}. "
        f"Mean diagonal of the counted T: {np.trace(T_overlap) / clothing.num_classes:.3f}.")
if synthetic:
    text += (f" Estimation error against the known T: "
             f"{estimation.estimation_error(T_overlap, T_true):.3f} (‖T̂ − T‖₁ / ‖T‖₁).")
display(Markdown(text))

# %% [markdown]
# How many doubly labelled images does the counting need? Counting on random
# subsets of the overlap shows how the error shrinks with their number (on
# the synthetic data, where the true $T$ is known; 5 random subsets per size).

# %%
if synthetic:
    rng = np.random.default_rng(0)
    rows = []
    for size in [n for n in (140, 280, 700, 1400, 2800, 7000) if n <= len(overlap)]:
        for draw in range(5):
            keep = set(rng.choice(overlap, size=size, replace=False))
            subset = replace(clothing, clean_labels={k: v for k, v in clothing.clean_labels.items() if k in keep})
            try:
                error = estimation.estimation_error(data.clothing1m_overlap_transition(subset), T_true)
            except ValueError:  # a class without any doubly labelled image
                continue
            rows.append({"doubly labelled images": size, "draw": draw, "error": error})
    curve = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(curve, x="doubly labelled images", y="error", marker="o", errorbar="sd", ax=ax)
    ax.set_xscale("log")
    sizes = sorted(curve["doubly labelled images"].unique())
    ax.set_xticks(sizes, labels=[f"{size:,}" for size in sizes])  # the sizes drawn, not log-scale minor ticks
    ax.minorticks_off()
    ax.set_ylabel(r"$\|\hat T - T\|_1 \,/\, \|T\|_1$")
    ax.set_title("Counting T on the overlap: error against its size (synthetic)")
    plt.show()
else:
    display(Markdown("(Skipped on the real data: the true T is unknown there.)"))

# %% [markdown]
# ## The ResNet-50 rows
#
# The training code for rows 4–8. With the real data, `train_resnet50=True`
# and `resnet50_weights` pointing at torchvision's ImageNet ResNet-50 weights
# (`models.resnet50` explains where to get them), it trains all five rows on
# `device` and stores the accuracies in `<results_dir>/clothing1m_resnet50.json`.
# Five rows of ten epochs each, three of them over a million images, take
# many hours even on a fast GPU, so training is off by default and stored
# accuracies are read when present. The
# learning rates, epochs, weight decays and batch size are the paper's; the
# paper does not say which epoch it evaluates, so the model after the last
# epoch is tested on the clean test set.

# %%
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def image_transforms(size: int, augment: bool):
    resize = transforms.Resize(round(size * 256 / 224))
    crop = [transforms.RandomCrop(size), transforms.RandomHorizontalFlip()] if augment else \
        [transforms.CenterCrop(size)]
    return transforms.Compose([resize, *crop, transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def loader(part: data.ImageList, *, size: int, augment: bool, shuffle: bool, batch_size: int = 32):
    dataset = data.ImageListDataset(clothing.root, part.paths, part.labels,
                                    transform=image_transforms(size, augment))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                      num_workers=num_workers if not synthetic else 0, pin_memory=dev.type == "cuda")


def train_row(model, part, loss_fn, *, weight_decay, augment, size, schedule=((1e-3, 5), (1e-4, 5)),
              max_steps=None):
    """SGD (momentum 0.9) with the paper's piecewise-constant learning rate
    (``schedule``: (rate, epochs) pairs), through `training.fit`; returns the model
    after the last epoch."""
    model = model.to(dev)
    # an L2 penalty on the convolution and dense kernels only, as in the authors' code
    groups = training.weight_decay_groups(list(model.parameters()), models.kernels(model), weight_decay)
    optimizer = torch.optim.SGD(groups, lr=schedule[0][0], momentum=0.9)
    rates = [lr for lr, n_epochs in schedule for _ in range(n_epochs)]  # the rate of every epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: rates[min(epoch, len(rates) - 1)] / rates[0])
    return training.fit(model, loss_fn, loader(part, size=size, augment=augment, shuffle=True), optimizer,
                        epochs=len(rates), lr_scheduler=scheduler, max_steps=max_steps, device=dev)


@torch.no_grad()
def test_accuracy(model, size: int) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader(clothing.clean_test, size=size, augment=False, shuffle=False):
        correct += (model(x.to(dev)).argmax(1).cpu() == y).sum().item()
        total += len(y)
    return 100.0 * correct / total


def table3_rows(T, *, size=224, weights=None, schedule=((1e-3, 5), (1e-4, 5)), max_steps=None,
                architecture="resnet50"):
    """Rows 4-8 of Table 3; returns {row name: clean test accuracy (%)}."""
    def pretrained():
        if architecture == "resnet50":  # ImageNet weights from a local file (random init if None)
            return models.build_model("resnet50", clothing.num_classes, weights_path=weights)
        return models.build_model(architecture, clothing.num_classes)

    noisy_part = clothing.noisy_train
    on_noisy = dict(weight_decay=1e-3, augment=False, size=size, schedule=schedule, max_steps=max_steps)
    on_clean = dict(weight_decay=5e-2, augment=True, size=size, schedule=schedule, max_steps=max_steps)
    accuracy = {}
    model = train_row(pretrained(), noisy_part, losses.make_loss("cross_entropy"), **on_noisy)
    accuracy["cross-entropy (row 4)"] = test_accuracy(model, size)
    model = train_row(pretrained(), noisy_part, losses.make_loss("backward", T=T, min_prob=losses.KERAS_EPSILON), **on_noisy)
    accuracy["backward (row 5)"] = test_accuracy(model, size)
    forward = train_row(pretrained(), noisy_part, losses.make_loss("forward", T=T), **on_noisy)
    accuracy["forward (row 6)"] = test_accuracy(forward, size)
    model = train_row(pretrained(), clothing.clean_train, losses.make_loss("cross_entropy"), **on_clean)
    accuracy["cross-entropy on 50k clean (row 7)"] = test_accuracy(model, size)
    model = train_row(forward, clothing.clean_train, losses.make_loss("cross_entropy"), **on_clean)
    accuracy["forward + fine-tuning on 50k (row 8)"] = test_accuracy(model, size)
    return accuracy


# %% [markdown]
# On the synthetic data the same function runs end to end, with every row
# cut to a few optimisation steps on 16×16 crops and, to keep this
# affordable on a CPU, the smallest pre-activation ResNet of `models`
# (ResNet-8) in place of ResNet-50: a check that the code path works (data loading from the key
# lists, both corrected losses with the counted $T$, fine-tuning of the
# forward-corrected model), not an experiment. Its accuracies are
# meaningless and are not shown. The ResNet-50 itself is only built, without
# ImageNet weights, and applied to one synthetic batch.

# %%
stored_path = Path(results_dir) / "clothing1m_resnet50.json"
ours = None
if synthetic:
    started = time.perf_counter()
    steps = 1 if profile == "smoke" else 5
    check = table3_rows(T_overlap, size=16, schedule=((1e-3, 1), (1e-4, 1)), max_steps=steps,
                        architecture="resnet8")
    resnet50 = models.build_model("resnet50", clothing.num_classes).to(dev).eval()
    images, _ = next(iter(loader(clothing.clean_test, size=32, augment=False, shuffle=False, batch_size=2)))
    with torch.no_grad():
        logits = resnet50(images.to(dev))
    display(Markdown(f"*Synthetic* code-path check: the five rows (ResNet-8, 16×16 crops) trained for {steps} SGD "
                     f"step(s) each (batch 32) and evaluated on {len(clothing.clean_test.paths):,} "
                     f"synthetic test images; ResNet-50 maps a batch of shape {tuple(images.shape)} to "
                     f"logits of shape {tuple(logits.shape)}; {time.perf_counter() - started:.0f} s on "
                     f"`{dev}`."))
elif reuse_results and stored_path.is_file():
    ours = json.loads(stored_path.read_text())
elif train_resnet50:
    if resnet50_weights is None:
        raise ValueError("train_resnet50=True needs resnet50_weights (ImageNet ResNet-50 weights file)")
    started = time.perf_counter()
    per_rate = epochs or 5
    accuracy = table3_rows(T_overlap, weights=resnet50_weights, schedule=((1e-3, per_rate), (1e-4, per_rate)))
    ours = {"accuracy": accuracy, "epochs_per_rate": per_rate, "device": str(dev),
            "hours": (time.perf_counter() - started) / 3600, "T_overlap": T_overlap.tolist()}
    if reuse_results:
        stored_path.parent.mkdir(parents=True, exist_ok=True)
        stored_path.write_text(json.dumps(ours, indent=1))

# %% [markdown]
# ## Table 3
#
# The paper's Table 3 in full: rows 1-3 are AlexNet results the paper quotes
# from Xiao et al. (2015); rows 4-8 are its ResNet-50 runs.

# %%
display(Markdown(TABLE3.fillna("").to_markdown(index=False)))

# %% [markdown]
# The ResNet-50 rows' accuracies on the clean test set, next to ours where
# they exist.

# %%
table = pd.DataFrame({"paper": PAPER_RESNET50})
if ours is not None:
    table = table.join(pd.Series(ours["accuracy"], name="ours"), how="outer")
    note = (f"Ours: trained with this notebook's `table3_rows` on {ours['device']} in "
            f"{ours['hours']:.1f} h, {ours['epochs_per_rate']} epoch(s) per learning rate, one run per "
            f"row, read from `{stored_path}`.")
elif synthetic:
    table["ours"] = "not run here: needs Clothing1M"
    note = "Only the synthetic code-path check above ran; it has no accuracy worth reporting."
else:
    table["ours"] = "not trained (set train_resnet50=True)"
    note = "Clothing1M is present but the ResNet-50 rows were not trained."
table = table.reindex(list(ROW_NAMES.values()))
shown = table.map(lambda v: v if isinstance(v, str) else "–" if pd.isna(v) else f"{v:.2f}")
display(Markdown(shown.to_markdown() + f"\n\n{note}"))
if synthetic:
    shutil.rmtree(synthetic_root.parent)  # the synthetic images are no longer needed
