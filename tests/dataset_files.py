"""Tiny data sets written in the exact official file formats, for tests.

Every writer takes a folder (the data root), draws random content from
``seed``, writes the files where the official distribution (or torchvision /
Keras) puts them, and returns what it wrote so that tests can compare:

- :func:`write_mnist_idx`: ``MNIST/raw/*-ubyte[.gz]`` (IDX, big-endian header);
- :func:`write_mnist_npz`: Keras ``mnist.npz``;
- :func:`write_aclimdb`: Stanford ``aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt``
  or the tarball ``aclImdb_v1.tar.gz``;
- :func:`write_imdb_npz`: Keras ``imdb.npz`` (object arrays of word-rank lists,
  rank 1 = most frequent word, no start marker or offset in the file) and
  ``imdb_word_index.json``;
- :func:`write_cifar10_pickles`, :func:`write_cifar100_pickles`: the CIFAR
  "python version" pickles (bytes keys, protocol 2, ``data`` ``(n, 3072)`` uint8);
- :func:`write_cifar10_jpg`: the JPEG copy ``cifar10-jpg/{train,test}/<class>/NNNN.jpg``,
  as a tarball or as folders;
- :func:`write_clothing1m`: Clothing1M's label files and key lists (optionally images).

Nothing here imports :mod:`losscorrection`, so the files are independent of the
loaders they test.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)


# ------------------------------------------------------------------------ MNIST


def write_idx(path: str | Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write a uint8 array as an IDX file (magic ``0x0000 08 <ndim>``, then the
    dimensions as big-endian int32, then the bytes); ``.gz`` appended when ``gz``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def _mnist_arrays(n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }


def write_mnist_idx(
    root: str | Path, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0,
    skip: tuple[str, ...] = (),
) -> dict:
    """MNIST in torchvision's layout ``<root>/MNIST/raw/<name>[.gz]``.

    ``skip``: names of :data:`MNIST_FILES` not to write. Returns the uint8
    arrays ``x_train (n_train, 28, 28)``, ``y_train``, ``x_test``, ``y_test``
    and ``paths`` (name -> written path)."""
    arrays = _mnist_arrays(n_train, n_test, seed)
    raw = Path(root) / "MNIST" / "raw"
    contents = dict(zip(MNIST_FILES, (arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])))
    paths = {name: write_idx(raw / name, a, gz) for name, a in contents.items() if name not in skip}
    return {**arrays, "paths": paths}


def write_mnist_npz(root: str | Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """Keras ``<root>/mnist.npz`` (``x_train (n, 28, 28)`` uint8, ``y_train`` uint8, ...)."""
    arrays = _mnist_arrays(n_train, n_test, seed)
    path = Path(root) / "mnist.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return {**arrays, "path": path}


# ------------------------------------------------------------------------- IMDB

_WORDS = (
    "the a and of to is movie film it this was bad good great awful acting plot story "
    "don't isn't it's 10 2 best worst love hate boring fun scene actor director end".split()
)


def _random_review(rng: np.random.Generator) -> str:
    """A review with upper case, punctuation, ``<br />`` breaks and apostrophes."""
    weights = 1.0 / np.arange(1, len(_WORDS) + 1)
    words = rng.choice(_WORDS, size=int(rng.integers(1, 30)), p=weights / weights.sum())
    pieces = []
    for w in words:
        w = str(w)
        r = rng.random()
        if r < 0.1:
            w = w.upper()
        elif r < 0.25:
            w = w.capitalize()
        if rng.random() < 0.15:
            w += str(rng.choice([".", ",", "!", "?", ";", "..."]))
        if rng.random() < 0.05:
            w += "<br /><br />"
        pieces.append(w)
    return " ".join(pieces)


def write_aclimdb(
    root: str | Path, n_train_per_class: int = 8, n_test_per_class: int = 5, seed: int = 0,
    tarball: bool = False, texts: dict | None = None,
) -> dict:
    """The Stanford IMDB layout ``aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt``
    (plus unlabelled reviews and extra files, which readers must ignore), as
    folders or as ``<root>/aclImdb_v1.tar.gz``.

    ``texts`` (optional): ``{"train": {"neg": [...], "pos": [...]}, "test": ...}``
    to write given reviews instead of random ones. File ids run 0, 1, ... in
    each folder, so ``10_*`` sorts before ``2_*`` as text but not by number.
    Returns ``{"train": (texts, labels), "test": ...}`` with negative reviews
    first, each class in file-number order, and ``path``.
    """
    rng = np.random.default_rng(seed)
    if texts is None:
        counts = {"train": n_train_per_class, "test": n_test_per_class}
        texts = {p: {c: [_random_review(rng) for _ in range(counts[p])] for c in ("neg", "pos")}
                 for p in ("train", "test")}
    files: dict[str, bytes] = {}
    for part in ("train", "test"):
        for cls in ("neg", "pos"):
            for i, text in enumerate(texts[part][cls]):
                rating = int(rng.integers(1, 5)) if cls == "neg" else int(rng.integers(7, 11))
                files[f"aclImdb/{part}/{cls}/{i}_{rating}.txt"] = text.encode("utf-8")
    files["aclImdb/train/unsup/0_0.txt"] = b"An unlabelled review that must be ignored."
    files["aclImdb/train/labeledBow.feat"] = b"0:1 1:2\n"
    files["aclImdb/imdb.vocab"] = b"the\nand\n"
    files["aclImdb/README"] = b"Large Movie Review Dataset v1.0\n"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if tarball:
        path = root / "aclImdb_v1.tar.gz"
        _write_tar(path, files, order=rng.permutation(len(files)))
    else:
        path = root / "aclImdb"
        for name, payload in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(payload)
    out: dict = {"path": path}
    for part in ("train", "test"):
        out[part] = (texts[part]["neg"] + texts[part]["pos"],
                     np.array([0] * len(texts[part]["neg"]) + [1] * len(texts[part]["pos"]), dtype=np.int64))
    return out


def simple_tokens(text: str) -> list[str]:
    """Keras' ``text_to_word_sequence``, written independently: lower case,
    ``<br />`` and every character of Keras' filter list as a space, split."""
    text = text.lower().replace("<br />", " ")
    return re.sub(r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~\t\n]", " ", text).split()


def write_imdb_npz(
    root: str | Path, n_train: int = 30, n_test: int = 20, seed: int = 0, n_words: int = 40,
    word_index: bool = True, reviews: dict | None = None,
) -> dict:
    """Keras ``<root>/imdb.npz``: ``x_train``/``x_test`` object arrays of lists of
    word ranks (1 = most frequent word; the file has no start marker and no
    index offset, :func:`keras.datasets.imdb.load_data` adds them), ``y_*`` 0/1;
    with ``word_index``, ``<root>/imdb_word_index.json`` (word -> rank).

    ``reviews`` (the output of :func:`write_aclimdb`): encode those texts, with
    ranks by frequency over all reviews, training and test, ties alphabetical
    (as Keras' word index). Otherwise random Zipf-distributed ranks ``1..n_words``.
    Returns ``x_train``/``x_test`` (lists of lists), ``y_train``, ``y_test``,
    ``word_index`` and ``path``.
    """
    rng = np.random.default_rng(seed)
    if reviews is not None:
        train_tokens = [simple_tokens(t) for t in reviews["train"][0]]
        test_tokens = [simple_tokens(t) for t in reviews["test"][0]]
        counts = Counter(w for seq in train_tokens + test_tokens for w in seq)
        index = {w: r for r, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w)), 1)}
        x_train = [[index[w] for w in seq] for seq in train_tokens]
        x_test = [[index[w] for w in seq] for seq in test_tokens]
        y_train, y_test = np.asarray(reviews["train"][1]), np.asarray(reviews["test"][1])
    else:
        p = 1.0 / np.arange(1, n_words + 1)
        p /= p.sum()

        def seqs(n):
            return [[int(r) for r in rng.choice(np.arange(1, n_words + 1), size=int(rng.integers(1, 25)), p=p)]
                    for _ in range(n)]

        x_train, x_test = seqs(n_train), seqs(n_test)
        y_train, y_test = rng.integers(0, 2, n_train), rng.integers(0, 2, n_test)
        index = {f"word{r}": r for r in range(1, n_words + 1)}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "imdb.npz"
    np.savez(path, x_train=_object_array(x_train), y_train=np.asarray(y_train, dtype=np.int64),
             x_test=_object_array(x_test), y_test=np.asarray(y_test, dtype=np.int64))
    if word_index:
        (root / "imdb_word_index.json").write_text(json.dumps(index))
    return {"x_train": x_train, "y_train": np.asarray(y_train), "x_test": x_test, "y_test": np.asarray(y_test),
            "word_index": index, "path": path}


def _object_array(lists: list[list[int]]) -> np.ndarray:
    out = np.empty(len(lists), dtype=object)
    for i, seq in enumerate(lists):
        out[i] = list(seq)
    return out


# ------------------------------------------------------------------------ CIFAR


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _batch(images: np.ndarray, labels: np.ndarray, label_key: bytes, name: str, extra: dict | None = None) -> dict:
    return {
        b"batch_label": name.encode(),
        label_key: [int(v) for v in labels],
        b"data": images.reshape(len(images), 3072),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))],
        **(extra or {}),
    }


def write_cifar10_pickles(root: str | Path, n_train_per_batch: int = 10, n_test: int = 10, seed: int = 0) -> dict:
    """``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.

    Returns ``x_train (5 * n_train_per_batch, 3, 32, 32)`` uint8 in batch order,
    ``y_train`` int64, ``x_test``, ``y_test``, ``label_names`` and ``folder``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    n = 5 * n_train_per_batch
    x_train = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=n)
    x_test = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test)
    for b in range(5):
        part = slice(b * n_train_per_batch, (b + 1) * n_train_per_batch)
        _pickle(folder / f"data_batch_{b + 1}",
                _batch(x_train[part], y_train[part], b"labels", f"training batch {b + 1} of 5"))
    _pickle(folder / "test_batch", _batch(x_test, y_test, b"labels", "testing batch 1 of 1"))
    _pickle(folder / "batches.meta", {
        b"num_cases_per_batch": n_train_per_batch,
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_vis": 3072,
    })
    (folder / "readme.html").write_text("<html></html>")
    return {"x_train": x_train, "y_train": y_train.astype(np.int64), "x_test": x_test,
            "y_test": y_test.astype(np.int64), "label_names": CIFAR10_CLASSES, "folder": folder}


def write_cifar100_pickles(root: str | Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict:
    """``<root>/cifar-100-python/{train, test, meta}`` with fine and coarse labels.

    Returns ``x_train``, ``y_train`` (fine labels), ``coarse_train``, ``x_test``,
    ``y_test``, ``coarse_test``, ``fine_label_names`` and ``folder``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    out: dict = {"folder": folder}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n)
        coarse = fine // 5
        _pickle(folder / part, _batch(x, fine, b"fine_labels", part, {b"coarse_labels": [int(c) for c in coarse]}))
        out.update({f"x_{part}": x, f"y_{part}": fine.astype(np.int64), f"coarse_{part}": coarse.astype(np.int64)})
    fine_names = tuple(f"fine_class_{i:02d}" for i in range(100))
    _pickle(folder / "meta", {
        b"fine_label_names": [n.encode() for n in fine_names],
        b"coarse_label_names": [f"coarse_class_{i:02d}".encode() for i in range(20)],
    })
    out["fine_label_names"] = fine_names
    return out


def _write_tar(path: Path, files: dict[str, bytes], order=None) -> None:
    """A gzipped tarball with the parent directories as members, then the files
    (in ``order``, a permutation of their indices)."""
    names = list(files)
    if order is not None:
        names = [names[i] for i in order]
    folders = sorted({"/".join(n.split("/")[:k]) for n in names for k in range(1, n.count("/") + 1)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for folder in folders:
            info = tarfile.TarInfo(folder + "/")
            info.type, info.mode = tarfile.DIRTYPE, 0o775
            tf.addfile(info)
        for name in names:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(files[name]), 0o664
            tf.addfile(info, io.BytesIO(files[name]))


def _jpeg(rng: np.random.Generator, quality: int) -> bytes:
    from PIL import Image

    base = rng.integers(0, 256, size=3)
    ramp = np.linspace(0, 1, 32)[:, None, None] * rng.integers(-80, 80, size=3)
    noise = rng.normal(0, 25, size=(32, 32, 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_cifar10_jpg(
    root: str | Path, per_class_train: int = 3, per_class_test: int = 2, tarball: bool = True,
    seed: int = 0, at_root: bool = False, classes: tuple[str, ...] = CIFAR10_CLASSES, quality: int = 75,
) -> dict:
    """The CIFAR-10 JPEG copy: members ``cifar10-jpg/{train,test}/<class>/NNNN.jpg``.

    ``tarball``: ``<root>/cifar10-jpg/cifar10-jpg.tar.gz`` (``<root>/cifar10-jpg.tar.gz``
    with ``at_root``), members in a shuffled order; otherwise the extracted
    folders ``<root>/cifar10-jpg/{train,test}/...``. Returns ``files``
    (``{(part, class, file name): JPEG bytes}``), ``classes`` and ``path``."""
    rng = np.random.default_rng(seed)
    files: dict[tuple[str, str, str], bytes] = {}
    for part, count in (("train", per_class_train), ("test", per_class_test)):
        for cls in classes:
            for i in range(count):
                files[(part, cls, f"{i:04d}.jpg")] = _jpeg(rng, quality)
    members = {f"cifar10-jpg/{p}/{c}/{n}": b for (p, c, n), b in files.items()}
    members["cifar10-jpg/LICENSE.txt"] = b"not an image\n"
    root = Path(root)
    if tarball:
        path = root / "cifar10-jpg.tar.gz" if at_root else root / "cifar10-jpg" / "cifar10-jpg.tar.gz"
        _write_tar(path, members, order=rng.permutation(len(members)))
    else:
        path = root / "cifar10-jpg"
        for name, payload in members.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(payload)
    return {"files": files, "classes": tuple(classes), "path": path}


# -------------------------------------------------------------------- CIFAR-10N


def write_cifar10n(root: Path, seed: int = 0) -> dict:
    """A small CIFAR-10N release: 3 classes x 4 images; the mapping lists the images
    in their original order, which is not the JPEG copy's (class, file) order."""
    rng = np.random.default_rng(seed)
    classes = ["airplane", "bird", "cat"]
    clean = np.repeat([2, 0, 1], 4)[rng.permutation(12)]
    files_per_class = {c: iter(range(4)) for c in range(3)}
    paths = [f"cifar10-jpg/train/{classes[c]}/{next(files_per_class[c]):04d}.jpg" for c in clean]
    labels = {"clean_label": clean}
    for key in ("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3"):
        labels[key] = np.where(rng.random(12) < 0.4, rng.integers(0, 3, 12), clean)
    base = root / "cifar10n"
    base.mkdir(parents=True)
    torch.save(labels, base / "CIFAR-10_human.pt")
    rows = ["orig_index,clean_label,class,jpg_path"] + [f"{i},{c},{classes[c]},{p}" for i, (c, p) in
                                                        enumerate(zip(clean, paths))]
    (base / "cifar10_train_index_to_jpgcopy.csv").write_text("\n".join(rows) + "\n")
    return {"labels": labels, "paths": paths}



# ------------------------------------------------------------------- Clothing1M


def write_clothing1m(
    root: str | Path, n_noisy_only: int = 60, n_clean_only: int = 30, n_both: int = 42, seed: int = 0,
    subdir: str | None = "clothing1m", images: bool = False, category_names: bool = True,
) -> dict:
    """Clothing1M's official files in ``<root>/<subdir>`` (``<root>`` when ``subdir`` is None):
    ``noisy_label_kv.txt``, ``clean_label_kv.txt`` (lines ``images/a/bc/<name>.jpg <label>``),
    ``noisy_train_key_list.txt``, ``clean_{train,val,test}_key_list.txt`` and,
    with ``category_names``, ``category_names_eng.txt``; with ``images``, a tiny
    JPEG per key.

    ``n_both`` images carry both labels (every clean class appears among them
    when ``n_both >= 14``); the clean keys are split 60/20/20 into train/val/test
    and the noisy training list leaves out the clean validation and test images.
    Returns ``base``, ``noisy_labels``, ``clean_labels`` (dicts) and the four key lists.
    """
    rng = np.random.default_rng(seed)
    total = n_noisy_only + n_clean_only + n_both
    keys = [f"images/{i % 10}/{i % 100:02d}/{int(h):08x}.jpg"
            for i, h in enumerate(rng.choice(2**31, size=total, replace=False))]
    split_at = n_noisy_only + n_clean_only
    noisy_only, clean_only, both = keys[:n_noisy_only], keys[n_noisy_only:split_at], keys[split_at:]
    noisy = {k: int(rng.integers(0, 14)) for k in noisy_only}
    clean = {k: int(rng.integers(0, 14)) for k in clean_only}
    both_clean = rng.permutation(np.arange(n_both) % 14)
    for k, c in zip(both, both_clean):
        clean[k] = int(c)
        noisy[k] = int(c) if rng.random() < 0.6 else int(rng.integers(0, 14))
    clean_keys = list(rng.permutation(clean_only + both))
    a, b = int(0.6 * len(clean_keys)), int(0.8 * len(clean_keys))
    lists = {"clean_train": clean_keys[:a], "clean_val": clean_keys[a:b], "clean_test": clean_keys[b:]}
    held = set(lists["clean_val"]) | set(lists["clean_test"])
    lists["noisy_train"] = [k for k in rng.permutation(list(noisy)) if k not in held]
    base = Path(root) / subdir if subdir else Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "noisy_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in noisy.items()))
    (base / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in clean.items()))
    for name, values in lists.items():
        (base / f"{name}_key_list.txt").write_text("".join(f"{k}\n" for k in values))
    if category_names:
        (base / "category_names_eng.txt").write_text("\n".join(CLOTHING1M_NAMES) + "\n")
    if images:
        for k in keys:
            (base / k).parent.mkdir(parents=True, exist_ok=True)
            (base / k).write_bytes(_jpeg(rng, 90))
    return {"base": base, "noisy_labels": noisy, "clean_labels": clean,
            **{name: [str(k) for k in values] for name, values in lists.items()}}


CLOTHING1M_NAMES = (
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
    "Jacket", "Down Coat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
)
