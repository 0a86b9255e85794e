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
# # Loss correction on your own data
#
# This chapter is a recipe. It applies Algorithm 1 of the paper to a data set
# that the library knows nothing about, with a plain PyTorch training loop
# that you can copy and adapt:
#
# 1. train a network with the ordinary cross-entropy on the noisy labels;
# 2. feed its softmax outputs to `estimate_transition` to get $\hat T$;
# 3. train again, from scratch, with the forward-corrected loss built from $\hat T$.
#
# Three library calls do the work: `losses.make_loss`,
# `estimation.estimate_transition` and, when you want to simulate noise to
# check that things work, `noise.corrupt`. The loop is the library's
# `training.fit`, a plain PyTorch loop shown in full in §2 that your own can
# replace. The example data set is
# scikit-learn's 8×8 handwritten digits, standing in for "your" arrays; the
# second half shows how to read the same kind of data from a folder of images
# or from a CSV file, and the last section hands the same arrays to the
# library's batched trainer.

# %% tags=["parameters"]
profile = "paper"  # smoke | quick | paper
device = "auto"  # auto | cpu | cuda
runs = None  # training runs (seeds) per method (None: the profile's)
epochs = None  # None: the profile's
progress = True
noise_rate = 0.4  # N of the paper's asymmetric MNIST noise (2→7, 3→8, 5↔6, 7→1)

# %%
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from losscorrection import estimation, losses, noise, report, training

EPOCHS = epochs or {"smoke": 5, "quick": 20, "paper": 40}[profile]
RUNS = runs or {"smoke": 1, "quick": 2, "paper": 5}[profile]
DEVICE = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                      "cpu" if device == "auto" else device)
report.glue_numbers(profile=profile, epochs=EPOCHS, runs=RUNS, device=str(DEVICE))

# %% [markdown]
# Profile {glue:text}`profile`: {glue:text}`epochs` epochs,
# {glue:text}`runs` run(s) per method, device {glue:text}`device`.
#
# ## 1. Your data as arrays
#
# Anything that gives a feature matrix `X` and integer labels `y` in
# $0, \dots, c-1$ works. We hold out a clean test set, then split the rest into
# training and validation parts (the paper keeps 10% for validation).

# %%
digits = load_digits()
X = (digits.data / 16.0).astype(np.float32)  # (1797, 64), pixels in [0, 1]
y = digits.target.astype(np.int64)  # (1797,), classes 0..9
num_classes = 10

X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
X_train, X_val, y_train, y_val = train_test_split(X_rest, y_rest, test_size=0.1, stratify=y_rest,
                                                  random_state=0)
print(f"train {len(y_train)}, validation {len(y_val)}, test {len(y_test)}; {X.shape[1]} features")

# %% [markdown]
# In a real application the training and validation labels are already
# noisy and you do not know $T$. To be able to check the method, we corrupt
# clean labels with a known $T$: the paper's MNIST noise, which fits digits.
# `T[i, j]` is the probability that true class `i` is labelled `j`. Any
# row-stochastic NumPy array works in its place. The test labels stay clean.

# %%
T = noise.asymmetric("mnist", noise_rate)
y_train_noisy = noise.corrupt(y_train, T, seed=1)
y_val_noisy = noise.corrupt(y_val, T, seed=2)
print(f"labels changed: {np.mean(y_train_noisy != y_train):.1%} of training, "
      f"{np.mean(y_val_noisy != y_val):.1%} of validation")

# %% [markdown]
# ## 2. The training loop
#
# A standard loop over a `DataLoader`: the library's `training.fit`, shown
# here in full (copy it if you prefer your own). The only thing specific to
# label noise is the loss object passed in, and one detail of model
# selection: the validation set is noisy too, so we keep the epoch with the
# lowest *validation loss computed with the same (corrected) loss*, as the
# paper does, rather than the best noisy validation accuracy.
#
# ```{literalinclude} /lib/losscorrection/training/fit.py
# :pyobject: fit
# ```
#
# Below, `train` builds a fresh network and AdaGrad (the paper's optimiser
# for its MNIST network) and calls `fit`.

# %%
def make_model() -> nn.Module:
    """Two hidden ReLU layers of 128 units, as in the paper's MNIST network (dropout 0.2, as in
    the authors' released code)."""
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, num_classes),
    )


def loader(X, y, shuffle=False) -> DataLoader:
    return DataLoader(TensorDataset(torch.tensor(X), torch.tensor(y)), batch_size=128,
                      shuffle=shuffle)


def train(loss_fn, train_loader, val_loader, epochs=EPOCHS, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    model = make_model().to(DEVICE)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.01, eps=1e-6)
    return training.fit(model, loss_fn, train_loader, optimizer, epochs=epochs, val_loader=val_loader,
                        device=DEVICE)


@torch.no_grad()
def predict_proba(model, data_loader) -> np.ndarray:
    """Softmax outputs, (n, c), in the loader's order."""
    return torch.cat([model(xb.to(DEVICE)).softmax(dim=1).cpu() for xb, _ in data_loader]).numpy()


def accuracy(model, data_loader) -> float:
    labels = np.concatenate([yb.numpy() for _, yb in data_loader])
    return 100.0 * np.mean(predict_proba(model, data_loader).argmax(axis=1) == labels)


# %% [markdown]
# ## 3. Algorithm 1
#
# **Stage 1**: cross-entropy on the noisy labels. **Estimation**: the softmax
# of that network on every input we have (training and validation together,
# labels not needed) gives $\hat T$; by default the estimator takes, for each
# class, the example at the 97th percentile of that class's predicted
# probability as its "anchor" and copies the network's prediction for it into
# row $i$ of $\hat T$. **Stage 2**: a fresh network trained with the
# forward-corrected loss. As references we also train with the true $T$
# (possible here only because we made the noise ourselves).

# %%
train_loader = loader(X_train, y_train_noisy, shuffle=True)
val_loader = loader(X_val, y_val_noisy)
test_loader = loader(X_test, y_test)  # clean labels
unlabelled = loader(np.concatenate([X_train, X_val]), np.zeros(len(X_train) + len(X_val), np.int64))

rows, estimates = [], []
for seed in range(RUNS):
    stage1 = train(losses.make_loss("cross_entropy"), train_loader, val_loader, seed=seed)
    T_hat = estimation.estimate_transition(predict_proba(stage1, unlabelled), quantile=0.97)
    estimates.append(T_hat)
    forward_hat = train(losses.make_loss("forward", T=T_hat), train_loader, val_loader, seed=seed)
    forward_true = train(losses.make_loss("forward", T=T), train_loader, val_loader, seed=seed)
    rows += [
        {"run": seed, "method": "cross-entropy (stage 1)", "test accuracy": accuracy(stage1, test_loader)},
        {"run": seed, "method": "forward, estimated T̂", "test accuracy": accuracy(forward_hat, test_loader),
         "‖T̂ − T‖₁ / ‖T‖₁": estimation.estimation_error(T_hat, T)},
        {"run": seed, "method": "forward, true T", "test accuracy": accuracy(forward_true, test_loader)},
    ]
results = pd.DataFrame(rows)
summary = results.groupby("method", sort=False).agg(
    accuracy=("test accuracy", "mean"), std=("test accuracy", lambda r: r.std(ddof=0)), runs=("run", "count"),
    T_error=("‖T̂ − T‖₁ / ‖T‖₁", "mean"))
display(summary.style.format({"accuracy": "{:.1f}", "std": "{:.1f}", "T_error": "{:.3f}"}, na_rep="–"))
report.glue_numbers(test_images=len(y_test), noise_rate=noise_rate)

# %% [markdown]
# Clean test accuracy (%) on the {glue:text}`test_images` test images of
# scikit-learn's digits, with labels corrupted by the asymmetric MNIST noise
# at $N$ = {glue:text}`noise_rate`: the mean and standard deviation over
# the runs.

# %%
report.plot_transition_pair(T, estimates[0], ("true T", "estimated T̂ (run 0)"),
                            f"Noise matrix of the digits example (asymmetric, N = {noise_rate})", decimals=1)
plt.show()

# %% [markdown]
# What to copy into your own project is the loop of §3: the two `train`
# calls and the estimator between them. A few practical points:
#
# - The estimator needs a stage-1 network that models the *noisy* class
#   probabilities well. Use the same architecture as for the final model and
#   a reasonably large set of inputs for the anchors (the paper uses training
#   and validation together; unlabelled inputs from the same distribution
#   work too).
# - The anchors assume that, for each class $i$, the examples most confidently
#   labelled $i$ really belong to class $i$. When another class is labelled
#   $i$ more often than class $i$ itself (a flip probability above 1/2 into a
#   class), the estimate of that row is wrong; the estimator chapter shows
#   this on MNIST with $N = 0.7$.
# - If you know $T$ from a small doubly-labelled subset, skip stage 1 and
#   build `make_loss("forward", T=T_known)` directly (this is what the
#   Clothing1M experiment does).
# - `make_loss("backward", T=...)` gives the backward correction; it inverts
#   $T$ and refuses badly conditioned matrices (mix $T$ with the identity
#   via `identity_mix=` in that case). The forward correction was the more
#   accurate of the two in most of the paper's experiments.
#
# ## 4. Images in class folders
#
# A folder tree `root/<class name>/<image file>` is read by torchvision's
# `ImageFolder`, and the result goes into a `DataLoader` like the tensors
# above. To keep this chapter self-contained we write a few hundred digits
# as PNG files into a temporary folder, with noisy labels as folder names
# (in your data the folder names are the labels you were given), and a clean
# test folder.

# %%
from PIL import Image
from torchvision import datasets, transforms

workdir = Path(tempfile.mkdtemp(prefix="your-dataset-"))
n_images = 300 if profile == "smoke" else len(y_train)


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for k, (image, label) in enumerate(zip(images, labels)):
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.reshape(8, 8) * 255).round().astype(np.uint8)).save(folder / f"{k:05d}.png")


write_folder(workdir / "images" / "train", X_train[:n_images], y_train_noisy[:n_images])
write_folder(workdir / "images" / "val", X_val, y_val_noisy)
write_folder(workdir / "images" / "test", X_test, y_test)
print(sorted(p.name for p in (workdir / "images" / "train").iterdir()))

# %%
to_vector = transforms.Compose([
    transforms.Grayscale(),
    transforms.ToTensor(),  # (1, 8, 8) in [0, 1]
    transforms.Lambda(torch.flatten),  # (64,) for the fully connected model
])
folders = {part: datasets.ImageFolder(workdir / "images" / part, transform=to_vector)
           for part in ("train", "val", "test")}
assert folders["train"].classes == folders["test"].classes  # same class -> index mapping
print("class index of each folder:", folders["train"].class_to_idx)

image_loaders = {part: DataLoader(ds, batch_size=128, shuffle=part == "train") for part, ds in folders.items()}
stage1 = train(losses.make_loss("cross_entropy"), image_loaders["train"], image_loaders["val"])
anchor_inputs = DataLoader(torch.utils.data.ConcatDataset([folders["train"], folders["val"]]), batch_size=256)
T_hat_images = estimation.estimate_transition(predict_proba(stage1, anchor_inputs))
corrected = train(losses.make_loss("forward", T=T_hat_images), image_loaders["train"], image_loaders["val"])
report.glue_numbers(folder_images=len(folders["train"]), folder_cross_entropy=accuracy(stage1, image_loaders["test"]),
                    folder_forward=accuracy(corrected, image_loaders["test"]),
                    folder_T_error=estimation.estimation_error(T_hat_images, T))

# %% [markdown]
# From the image folders ({glue:text}`folder_images:,` training images, one
# run): clean test accuracy {glue:text}`folder_cross_entropy:.1f` % with
# cross-entropy and {glue:text}`folder_forward:.1f` % with forward correction
# by T̂, whose estimation error is {glue:text}`folder_T_error:.3f`.
#
# For real photographs, replace `to_vector` with the usual resizing,
# cropping and normalisation transforms and `make_model` with a
# convolutional network (e.g. a torchvision ResNet with its last layer
# replaced by one with $c$ outputs); nothing else changes. Class folders are
# sorted by name to give the label indices, so check `class_to_idx` before
# writing a $T$ by hand.
#
# ## 5. A CSV file
#
# A table with one row per example, feature columns and a label column, read
# with pandas.

# %%
table = pd.DataFrame(X_train, columns=[f"pixel_{k}" for k in range(64)]).assign(label=y_train_noisy)
table.to_csv(workdir / "train.csv", index=False)

frame = pd.read_csv(workdir / "train.csv")
features = frame.drop(columns="label").to_numpy(dtype=np.float32)
labels = frame["label"].to_numpy(dtype=np.int64)
csv_loader = loader(features, labels, shuffle=True)
stage1 = train(losses.make_loss("cross_entropy"), csv_loader, val_loader)
T_hat_csv = estimation.estimate_transition(predict_proba(stage1, loader(features, labels)))
report.glue_numbers(csv_rows=len(frame), csv_columns=frame.shape[1],
                    csv_T_error=estimation.estimation_error(T_hat_csv, T))
shutil.rmtree(workdir)  # the example files are no longer needed

# %% [markdown]
# From the CSV file ({glue:text}`csv_rows:,` rows × {glue:text}`csv_columns`
# columns), T̂ has an estimation error of {glue:text}`csv_T_error:.3f`; the
# rest is as in §3.
#
# Categorical or text columns need an encoding first (one-hot, embeddings);
# if the label column holds strings, map them to indices with
# `pd.Categorical(frame["label"]).codes` and keep the categories to read
# $\hat T$.
#
# ## 6. Many runs at once: the library's trainer
#
# The loop of §2 trains one network at a time. The trainer behind the
# experiment chapters (`training.run_cells`) trains many runs of the paper's
# networks together as one batched model, selects epochs on the noisy
# validation split, stores every run with its provenance and resumes an
# interrupted sweep. It takes your data as a `data.Split` (here built by
# `data.split_arrays`, which holds out the paper's 10% for validation) and
# a small `training.Experiment` that names the network and the optimiser.
#
# Labels that are already noisy, as yours are, go with the setting
# `("none", 0.0)`: the trainer adds no noise of its own, stage 1 estimates
# $\hat T$ from your labels, and the `_That` methods use it.

# %%
from dataclasses import replace

from losscorrection import data
from losscorrection.methods import METHOD_SPECS
from losscorrection.results import ResultStore

y_rest_noisy = noise.corrupt(y_rest, T, seed=3)  # stands for your noisy labels
your_split = data.split_arrays("your-data", X_rest, y_rest_noisy, X_test, y_test,
                               description="digits with noisy labels, standing in for yours")
experiment = training.Experiment(
    key="your_data_fc", dataset="your-data", model="mlp",
    noise_family="mnist",  # used only for settings that add asymmetric noise
    schedule=replace(training.ADAGRAD, epochs=EPOCHS), runs=RUNS, settings=(("none", 0.0),),
    description="digits with noisy labels, standing in for yours",
)
methods = ("cross_entropy", "backward_That", "forward_That")
cells = [training.Cell(m, "none", 0.0, k) for m in methods for k in range(RUNS)]
store_dir = Path(tempfile.mkdtemp(prefix="your-results-"))
rows = training.run_cells(experiment, cells, profile="paper", device=DEVICE, results_dir=store_dir,
                          split=your_split, progress=progress)
store = ResultStore(store_dir)
T_hat_errors = [estimation.estimation_error(store.get_transition(experiment.key, "none", 0.0, k, "paper"), T)
                for k in range(RUNS)]
summary = rows.groupby("method", sort=False)["test_accuracy"].agg(
    mean="mean", std=lambda r: r.std(ddof=0), runs="count").reindex(methods)  # std as the paper: ddof 0
summary.index = [METHOD_SPECS[m].label for m in summary.index]
display(summary.round(2))
report.glue_numbers(stored_runs=len(rows), stored_seconds=rows["wall_seconds"].sum(),
                    stored_device=rows["device"].iloc[0], stored_T_errors=", ".join(f"{e:.3f}" for e in T_hat_errors))
shutil.rmtree(store_dir)  # a real project keeps its results directory

# %% [markdown]
# `run_cells` trained {glue:text}`stored_runs` runs in
# {glue:text}`stored_seconds:.1f` s ({glue:text}`stored_device`); the table
# gives the clean test accuracy (%), mean and standard deviation over the
# runs. The estimation errors of the runs' T̂ against the T we used to
# corrupt the labels are {glue:text}`stored_T_errors`.
