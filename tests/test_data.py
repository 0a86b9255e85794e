"""Data loaders, splits and image operations.

Loaders are checked on tiny files written in the official formats
(``dataset_files``) and, through ``real_data_root``, on the real data available
offline (the MNIST test set and the CIFAR-10 JPEG copy).
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dataset_files as files
from conftest import find_real_data_root
from losscorrection import data
from losscorrection.data import imdb

# ----------------------------------------------------------------- utilities


def assert_split_shapes(split: data.Split, sizes: tuple[int, int, int], row_shape: tuple, dtype) -> None:
    assert split.sizes == dict(zip(("train", "val", "test"), sizes))
    for part, n in zip(("train", "val", "test"), sizes):
        x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
        assert tuple(x.shape) == (n, *row_shape)
        assert x.dtype == dtype
        assert y.dtype == torch.int64 and tuple(y.shape) == (n,)
        if n:
            assert 0 <= int(y.min()) and int(y.max()) < split.num_classes


def full_training_order(split: data.Split, n: int, fraction: float = 0.1, seed: int = 0):
    """Inputs and labels of the official training set, rebuilt from train + val."""
    train_idx, val_idx = data.holdout_split(n, fraction, seed)
    x = torch.empty((n, *split.x_train.shape[1:]), dtype=split.x_train.dtype)
    y = torch.empty(n, dtype=torch.int64)
    x[train_idx], y[train_idx] = split.x_train, split.y_train
    x[val_idx], y[val_idx] = split.x_val, split.y_val
    return x, y


def row_multiset(*xs: torch.Tensor) -> Counter:
    return Counter(bytes(row.numpy().tobytes()) for x in xs for row in x)


def to_bytes(x: torch.Tensor) -> np.ndarray:
    """Float pixels in [0, 1] back to uint8."""
    return (x * 255).round().to(torch.uint8).numpy()


def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text
    return text


# ------------------------------------------------------------- basics, splits


def test_resolve_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("LOSSCORR_DATA", str(tmp_path / "env"))
    assert data.resolve_data_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert data.resolve_data_root() == (tmp_path / "env").resolve()
    monkeypatch.delenv("LOSSCORR_DATA")
    monkeypatch.chdir(tmp_path)
    assert data.resolve_data_root() == (tmp_path / "data").resolve()
    assert isinstance(data.resolve_data_root("x"), Path)


def test_holdout_split_is_the_fixed_permutation():
    train, val = data.holdout_split(1000, 0.1, seed=3)
    perm = np.random.default_rng(3).permutation(1000)
    np.testing.assert_array_equal(val, perm[:100])
    np.testing.assert_array_equal(train, perm[100:])
    again = data.holdout_split(1000, 0.1, seed=3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(data.holdout_split(1000, 0.1, seed=4)[1], val)
    assert len(data.holdout_split(25_000)[1]) == 2_500 and len(data.holdout_split(60_000)[1]) == 6_000
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            data.holdout_split(10, bad)


def test_stratified_holdout_exact_total_and_per_class_share():
    rng = np.random.default_rng(0)
    y = rng.choice(7, size=1003, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05])
    rest, held = data.stratified_holdout(y, 0.2, seed=5)
    assert len(held) == round(0.2 * 1003) and len(rest) + len(held) == 1003
    assert set(rest).isdisjoint(held) and set(rest) | set(held) == set(range(1003))
    for c in range(7):
        assert abs((y[held] == c).sum() - 0.2 * (y == c).sum()) < 1
    again = data.stratified_holdout(y, 0.2, seed=5)
    np.testing.assert_array_equal(again[1], held)


def test_unknown_dataset_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist1m'") as err:
        data.load_dataset("mnist1m", tmp_path)
    for name in data.DATASETS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="limit"):
        data.load_dataset("digits", limit=0)
    with pytest.raises(ValueError, match="fraction"):
        data.load_dataset("digits", validation_fraction=1.0)


@pytest.mark.parametrize("name", [name for name in data.registry.REGISTRY if name != "digits"])
def test_missing_files_is_what_loading_reports(tmp_path, name):
    """Each registry entry's missing-files check agrees with its loader (digits needs no files)."""
    with pytest.raises(data.MissingDataError) as err:
        data.load_dataset(name, tmp_path)
    assert err.value.missing
    assert data.missing_files(name, tmp_path) == list(err.value.missing)


@pytest.mark.parametrize("name", list(data.registry.REGISTRY))
def test_nominal_training_size_is_the_loaded_one(name):
    """The size a cost estimate uses without reading the data is the loaded split's."""
    root = find_real_data_root() if name != "digits" else None
    if name != "digits" and data.missing_files(name, root):
        pytest.skip(f"no {name} data under {root}")
    kwargs = {"progress": False} if name == "cifar10jpg" else {}
    assert data.nominal_train_size(name) == data.load_dataset(name, root, **kwargs).sizes["train"]
    assert data.nominal_train_size("your-data") == 0


def test_split_summary_and_validation():
    split = data.load_dataset("digits")
    assert "1,294 train / 144 val / 359 test" in split.summary()
    assert split.summary() in repr(split)
    with pytest.raises(ValueError, match="rows"):
        data.Split("x", "", 2, torch.zeros(3, 1), torch.zeros(2, dtype=torch.int64), torch.zeros(0, 1),
                   torch.zeros(0, dtype=torch.int64), torch.zeros(0, 1), torch.zeros(0, dtype=torch.int64),
                   ("a", "b"))


# ------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_layout(tmp_path, gz):
    written = files.write_mnist_idx(tmp_path, n_train=60, n_test=20, gz=gz, seed=1)
    split = data.load_dataset("mnist", tmp_path)
    assert_split_shapes(split, (54, 6, 20), (784,), torch.float32)
    x, y = full_training_order(split, 60)
    np.testing.assert_array_equal(to_bytes(x), written["x_train"].reshape(60, 784))
    np.testing.assert_array_equal(y.numpy(), written["y_train"])
    np.testing.assert_array_equal((split.x_test * 255).round().to(torch.uint8).numpy(),
                                  written["x_test"].reshape(20, 784))
    np.testing.assert_array_equal(split.y_test.numpy(), written["y_test"])
    assert float(split.x_train.min()) >= 0.0 and float(split.x_train.max()) <= 1.0
    torch.testing.assert_close(split.x_test, torch.tensor(written["x_test"].reshape(20, 784) / 255.0,
                                                          dtype=torch.float32))
    assert split.class_names == tuple("0123456789")
    assert "60k/10k" in split.description or "60,000" in split.description


def test_mnist_keras_npz_layout(tmp_path):
    written = files.write_mnist_npz(tmp_path, n_train=50, n_test=10, seed=2)
    split = data.load_dataset("mnist", tmp_path)
    assert_split_shapes(split, (45, 5, 10), (784,), torch.float32)
    x, y = full_training_order(split, 50)
    np.testing.assert_array_equal(to_bytes(x), written["x_train"].reshape(50, 784))
    np.testing.assert_array_equal(y.numpy(), written["y_train"])
    np.testing.assert_array_equal(split.y_test.numpy(), written["y_test"])


def test_mnist_missing_training_images_names_the_file(tmp_path):
    files.write_mnist_idx(tmp_path, skip=("train-images-idx3-ubyte",))
    with pytest.raises(data.MissingDataError) as err:
        data.load_dataset("mnist", tmp_path)
    message = one_line(err.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert "t10k-images" not in " ".join(err.value.missing)  # present files are not reported missing
    assert "mnist.npz" in message and "download=True" in message
    assert isinstance(err.value, FileNotFoundError)
    assert data.missing_files("mnist", tmp_path) == [str(tmp_path / "MNIST/raw/train-images-idx3-ubyte.gz")]
    assert data.missing_files("mnist10k", tmp_path) == []


def test_bad_idx_magic_and_size(tmp_path):
    written = files.write_mnist_idx(tmp_path, n_train=10, n_test=5)
    labels_path = written["paths"]["t10k-labels-idx1-ubyte"]
    with pytest.raises(ValueError, match="magic number 2049"):
        data.read_idx_images(labels_path)
    raw = gzip.decompress(written["paths"]["t10k-images-idx3-ubyte"].read_bytes())
    (tmp_path / "truncated").write_bytes(raw[:-7])
    with pytest.raises(ValueError, match="size"):
        data.read_idx_images(tmp_path / "truncated")
    # a corrupted file in the MNIST folder surfaces through the loader
    labels_path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:50]))
    with pytest.raises(ValueError, match="magic"):
        data.load_dataset("mnist10k", tmp_path)
    np.testing.assert_array_equal(data.read_idx_labels(written["paths"]["train-labels-idx1-ubyte"]),
                                  written["y_train"])


def test_mnist10k_resplits_the_test_set(tmp_path):
    written = files.write_mnist_idx(tmp_path, n_train=0, n_test=500, seed=4,
                                    skip=("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))
    split = data.load_dataset("mnist10k", tmp_path)
    assert_split_shapes(split, (360, 40, 100), (784,), torch.float32)
    assert "NOT the paper's 60k/10k protocol" in split.description and "MNIST-10k" in split.description
    # the three parts are exactly the official test images, with their labels
    pixels = (torch.cat([split.x_train, split.x_val, split.x_test]) * 255).round().to(torch.uint8)
    labels = torch.cat([split.y_train, split.y_val, split.y_test])
    expected = Counter((row.tobytes(), int(lab)) for row, lab in
                       zip(written["x_test"].reshape(500, 784), written["y_test"]))
    assert Counter((row.numpy().tobytes(), int(lab)) for row, lab in zip(pixels, labels)) == expected
    # stratified: 20% of every class in the test part, within one image
    y = written["y_test"]
    for c in range(10):
        assert abs(int((split.y_test == c).sum()) - 0.2 * (y == c).sum()) < 1
    # fixed: the test part does not depend on the validation seed
    other = data.load_dataset("mnist10k", tmp_path, split_seed=1)
    torch.testing.assert_close(other.x_test, split.x_test)
    assert not torch.equal(other.y_val, split.y_val)


def test_limit_keeps_the_first_examples_of_each_part(tmp_path):
    files.write_mnist_idx(tmp_path, n_train=60, n_test=20)
    full = data.load_dataset("mnist", tmp_path)
    small = data.load_dataset("mnist", tmp_path, limit=5)
    assert small.sizes == {"train": 5, "val": 5, "test": 5}
    for part in ("train", "val", "test"):
        torch.testing.assert_close(getattr(small, f"x_{part}"), getattr(full, f"x_{part}")[:5])
        torch.testing.assert_close(getattr(small, f"y_{part}"), getattr(full, f"y_{part}")[:5])
    assert data.load_dataset("mnist", tmp_path, limit=1000).sizes == full.sizes


def test_splits_are_deterministic_and_disjoint(tmp_path):
    files.write_mnist_idx(tmp_path, n_train=60, n_test=20, seed=7)
    a = data.load_dataset("mnist", tmp_path)
    b = data.load_dataset("mnist", tmp_path)
    c = data.load_dataset("mnist", tmp_path, split_seed=1, validation_fraction=0.2)
    torch.testing.assert_close(a.x_val, b.x_val)
    assert c.sizes == {"train": 48, "val": 12, "test": 20}
    train, val, test = (row_multiset(x) for x in (a.x_train, a.x_val, a.x_test))
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)


def test_digits():
    split = data.load_dataset("digits")
    assert_split_shapes(split, (1294, 144, 359), (64,), torch.float32)
    assert "8x8 digits" in split.description and "1,797" in split.description
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x_all = torch.cat([split.x_train, split.x_val, split.x_test])
    assert float(x_all.min()) == 0.0 and float(x_all.max()) == 1.0
    expected = Counter((row.astype(np.float32) / 16).tobytes() + bytes([t])
                       for row, t in zip(bunch.data, bunch.target))
    got = Counter(x.numpy().tobytes() + bytes([int(t)]) for x, t in
                  zip(x_all, torch.cat([split.y_train, split.y_val, split.y_test])))
    assert got == expected
    for c in range(10):
        assert abs(int((split.y_test == c).sum()) - 0.2 * (bunch.target == c).sum()) < 1
    torch.testing.assert_close(data.load_dataset("digits").x_test, split.x_test)


# -------------------------------------------------------------------- IMDB

TINY_REVIEWS = {
    "train": {
        "neg": ["The movie was bad. <br /><br />Bad, BAD acting!"],
        "pos": ["A good movie; the acting was good. Don't miss it"],
    },
    "test": {"neg": ["Bad movie, zebra."], "pos": ["good good good good good good"]},
}
# Word counts over all four reviews: good 8; bad 4; movie 3; acting, the, was 2; a, don't, it, miss,
# zebra 1. Ranks (ties alphabetical): good 1, bad 2, movie 3, acting 4, the 5, ... Keras' encoding
# with vocabulary_size=7 keeps ranks 1-3 as ids 4-6 (rank + 3); every other word is 2 (out of
# vocabulary), and each review starts with 1; maxlen=5 keeps the last 5 ids, padding with 0 in front.
TINY_EXPECTED = {
    # [start] the movie was bad bad bad acting -> 1 2 6 2 5 5 5 2 -> last five
    ("train", 0): [2, 5, 5, 5, 2],
    # [start] a good movie the acting was good don't miss it -> ... 4 2 2 2 (last five: was good don't miss it)
    ("train", 1): [2, 4, 2, 2, 2],
    # [start] bad movie zebra -> 1 5 6 2, padded
    ("test", 0): [0, 1, 5, 6, 2],
    ("test", 1): [4, 4, 4, 4, 4],
}


def check_tiny(split: data.Split) -> None:
    x, y = full_training_order(split, 2, fraction=0.5)
    for label in (0, 1):
        assert x[y == label].tolist() == [TINY_EXPECTED[("train", label)]]
        assert split.x_test[split.y_test == label].tolist() == [TINY_EXPECTED[("test", label)]]
    assert split.x_train.dtype == torch.int64 and split.x_train.shape[1] == 5


@pytest.mark.parametrize("tarball", [False, True])
def test_imdb_text_pipeline_by_hand(tmp_path, tarball):
    files.write_aclimdb(tmp_path, texts=TINY_REVIEWS, tarball=tarball)
    split = data.load_dataset("imdb", tmp_path, vocabulary_size=7, maxlen=5, validation_fraction=0.5)
    check_tiny(split)
    assert split.vocabulary == ("<pad>", "<start>", "<oov>", "<unused>", "good", "bad", "movie")
    assert split.class_names == ("negative", "positive")


def test_imdb_npz_pipeline_by_hand(tmp_path):
    """The file stores word ranks; Keras' load_data(num_words=6) makes rank r id
    r + 3 while below 6 (ranks 1, 2), id 2 otherwise, after a start id 1."""
    path = tmp_path / "imdb.npz"
    x_train = files._object_array([[2, 9, 1, 2, 3], [1, 1, 7, 2]])
    x_test = files._object_array([[3, 2], [1, 8, 8, 2, 2, 1]])
    np.savez(path, x_train=x_train, y_train=np.array([0, 1]), x_test=x_test, y_test=np.array([1, 0]))
    split = data.load_dataset("imdb", tmp_path, vocabulary_size=6, maxlen=5, validation_fraction=0.5)
    x, y = full_training_order(split, 2, fraction=0.5)
    assert x[y == 0].tolist() == [[5, 2, 4, 5, 2]]  # [1] 2 9 1 2 3 -> 1 5 2 4 5 2, first id cut
    assert x[y == 1].tolist() == [[1, 4, 4, 2, 5]]
    assert split.x_test[split.y_test == 1].tolist() == [[0, 0, 1, 2, 5]]
    assert split.x_test[split.y_test == 0].tolist() == [[2, 2, 5, 5, 4]]
    assert split.vocabulary is None  # no imdb_word_index.json


def test_keras_encoding_and_tokenizer():
    assert data.tokenize("It's GREAT!<br /><br />Really--great.") == ["it's", "great", "really", "great"]
    assert data.rank_words([["b", "a"], ["a", "c", "b"], ["a"]]) == {"a": 1, "b": 2, "c": 3}
    assert data.encode_ranks([1, 2, 3, 50], vocabulary_size=6) == [1, 4, 5, 2, 2]
    with pytest.raises(ValueError, match="above 3"):
        data.encode_ranks([1], vocabulary_size=3)


def test_encoded_reviews_are_cached(tmp_path, monkeypatch):
    files.write_aclimdb(tmp_path / "data", n_train_per_class=10, n_test_per_class=5, tarball=True)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    first = data.load_dataset("imdb", tmp_path / "data", vocabulary_size=20, maxlen=12)
    assert len(list((tmp_path / "data").glob("imdb-v1-*-20-12.npz"))) == 1  # beside the tarball
    monkeypatch.setattr(imdb, "_aclimdb_texts", lambda *a: pytest.fail("read the reviews again"))
    again = data.load_dataset("imdb", tmp_path / "data", vocabulary_size=20, maxlen=12)
    torch.testing.assert_close(first.x_train, again.x_train)
    assert first.vocabulary == again.vocabulary


def test_imdb_npz_and_text_pipelines_agree(tmp_path):
    reviews = files.write_aclimdb(tmp_path / "text", n_train_per_class=30, n_test_per_class=20, seed=3)
    files.write_aclimdb(tmp_path / "tar", n_train_per_class=30, n_test_per_class=20, seed=3, tarball=True)
    written = files.write_imdb_npz(tmp_path / "npz", reviews=reviews)
    kwargs = dict(vocabulary_size=12, maxlen=15)
    assert reviews["path"].is_dir()
    text = data.load_dataset("imdb", tmp_path / "text", **kwargs)
    tar = data.load_dataset("imdb", tmp_path / "tar", **kwargs)
    npz = data.load_dataset("imdb", tmp_path / "npz", **kwargs)
    assert_split_shapes(text, (54, 6, 40), (15,), torch.int64)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        torch.testing.assert_close(getattr(text, part), getattr(npz, part))
        torch.testing.assert_close(getattr(text, part), getattr(tar, part))
    assert npz.vocabulary == text.vocabulary  # words from imdb_word_index.json
    assert int(text.x_train.max()) == 11 and int(text.x_train.min()) == 0
    assert (text.x_train == 2).any()  # some words fall out of the vocabulary
    # test reviews are stored sorted by label; the first ones (limit) mix both classes
    assert set(data.load_dataset("imdb", tmp_path / "npz", limit=10).y_test.tolist()) == {0, 1}
    assert sorted(npz.y_test.tolist()) == sorted(written["y_test"].tolist())


def test_imdb_default_sequence_length(tmp_path):
    files.write_imdb_npz(tmp_path, n_train=20, n_test=10)
    split = data.load_dataset("imdb", tmp_path)
    assert_split_shapes(split, (18, 2, 10), (400,), torch.int64)
    assert (split.x_train[:, :370] == 0).all()  # short reviews are padded at the front
    assert split.vocabulary[:5] == ("<pad>", "<start>", "<oov>", "<unused>", "word1")
    assert "ids below 5,000 kept" in split.description


def test_imdb_missing(tmp_path):
    with pytest.raises(data.MissingDataError) as err:
        data.load_dataset("imdb", tmp_path)
    message = one_line(err.value)
    for needle in (str(tmp_path / "imdb.npz"), str(tmp_path / "aclImdb"), "aclImdb_v1.tar.gz",
                   "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz",
                   "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"):
        assert needle in message


# ------------------------------------------------------------------- CIFAR


def test_cifar10_pickles(tmp_path):
    written = files.write_cifar10_pickles(tmp_path, n_train_per_batch=8, n_test=12, seed=5)
    split = data.load_dataset("cifar10", tmp_path)
    assert_split_shapes(split, (36, 4, 12), (3, 32, 32), torch.uint8)
    x, y = full_training_order(split, 40)
    np.testing.assert_array_equal(x.numpy(), written["x_train"])
    np.testing.assert_array_equal(y.numpy(), written["y_train"])
    np.testing.assert_array_equal(split.x_test.numpy(), written["x_test"])
    np.testing.assert_array_equal(split.y_test.numpy(), written["y_test"])
    assert split.class_names == data.CIFAR10_CLASSES


def test_cifar100_fine_labels(tmp_path):
    written = files.write_cifar100_pickles(tmp_path, n_train=30, n_test=10, seed=6)
    split = data.load_dataset("cifar100", tmp_path)
    assert_split_shapes(split, (27, 3, 10), (3, 32, 32), torch.uint8)
    assert split.num_classes == 100 and split.class_names == written["fine_label_names"]
    x, y = full_training_order(split, 30)
    np.testing.assert_array_equal(y.numpy(), written["y_train"])  # fine, not coarse
    np.testing.assert_array_equal(x.numpy(), written["x_train"])
    np.testing.assert_array_equal(split.y_test.numpy(), written["y_test"])


def test_cifar_missing_files(tmp_path):
    written = files.write_cifar10_pickles(tmp_path, n_train_per_batch=2, n_test=2)
    (written["folder"] / "data_batch_3").unlink()
    with pytest.raises(data.MissingDataError) as err:
        data.load_dataset("cifar10", tmp_path)
    message = one_line(err.value)
    assert str(written["folder"] / "data_batch_3") in message
    assert "data_batch_1" not in " ".join(err.value.missing)
    assert "download=True" in message and "cifar-10-python.tar.gz" in message
    with pytest.raises(data.MissingDataError, match="cifar-100-python/meta"):
        data.load_dataset("cifar100", tmp_path)


# ------------------------------------------------------- CIFAR-10 JPEG copy


def pil_decode(files_written: dict, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Expected arrays: sorted class folders, sorted file names, RGB, (n, 3, 32, 32)."""
    classes = sorted({c for _, c, _ in files_written})
    keys = sorted((k for k in files_written if k[0] == part), key=lambda k: (classes.index(k[1]), k[2]))
    images = [np.asarray(Image.open(io.BytesIO(files_written[k])).convert("RGB")).transpose(2, 0, 1) for k in keys]
    return np.stack(images), np.array([classes.index(k[1]) for k in keys])


def check_jpg_split(split: data.Split, written: dict, per_class_train: int, per_class_test: int) -> None:
    k = len(written["classes"])
    n_train = k * per_class_train
    n_val = round(0.1 * n_train)
    assert_split_shapes(split, (n_train - n_val, n_val, k * per_class_test), (3, 32, 32), torch.uint8)
    x_expected, y_expected = pil_decode(written["files"], "train")
    x, y = full_training_order(split, n_train)
    np.testing.assert_array_equal(x.numpy(), x_expected)
    np.testing.assert_array_equal(y.numpy(), y_expected)
    x_test, y_test = pil_decode(written["files"], "test")
    # the test part is in a fixed shuffled order: compare as (image, label) multisets
    got = Counter((a.tobytes(), int(b)) for a, b in zip(split.x_test.numpy(), split.y_test))
    assert got == Counter((a.tobytes(), int(b)) for a, b in zip(x_test, y_test))
    assert split.class_names == tuple(sorted(written["classes"]))


@pytest.mark.parametrize("layout", ["tarball", "tarball_at_root", "folders"])
def test_cifar10jpg_layouts_decode_like_pil(tmp_path, layout):
    written = files.write_cifar10_jpg(tmp_path, per_class_train=4, per_class_test=2, seed=8,
                                      tarball=layout != "folders", at_root=layout == "tarball_at_root")
    split = data.load_dataset("cifar10jpg", tmp_path, progress=False)
    check_jpg_split(split, written, 4, 2)
    assert "JPEG copy, quality ~75; slightly lossy" in split.description
    # the cache sits next to the data
    beside = written["path"].parent if layout != "folders" else written["path"]
    assert len(list(beside.glob("cifar10jpg-*.npz"))) == 1


def test_cifar10jpg_cache_is_reused_and_refreshed(tmp_path, monkeypatch):
    written = files.write_cifar10_jpg(tmp_path, per_class_train=2, per_class_test=1, seed=9)
    first = data.load_dataset("cifar10jpg", tmp_path, progress=False)
    real_decode = data.cifar._decode_cifar10_jpg

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data.cifar, "_decode_cifar10_jpg", refuse)
    second = data.load_dataset("cifar10jpg", tmp_path, progress=False)
    for part in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        torch.testing.assert_close(getattr(first, part), getattr(second, part))
    # a changed source (new size and time) is decoded again
    calls = []
    monkeypatch.setattr(data.cifar, "_decode_cifar10_jpg", lambda *a, **k: (calls.append(1), real_decode(*a, **k))[1])
    rewritten = files.write_cifar10_jpg(tmp_path, per_class_train=3, per_class_test=1, seed=10)
    os.utime(rewritten["path"], ns=(1_000_000_000, 1_000_000_000))
    third = data.load_dataset("cifar10jpg", tmp_path, progress=False)
    assert calls == [1]
    check_jpg_split(third, rewritten, 3, 1)
    assert written["path"] == rewritten["path"]


def test_cifar10jpg_read_only_folder_caches_elsewhere(tmp_path, monkeypatch):
    written = files.write_cifar10_jpg(tmp_path / "data", per_class_train=2, per_class_test=1, seed=11,
                                      classes=("cat", "dog", "ant"))
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOSSCORR_CACHE", str(cache))
    folder = written["path"].parent
    folder.chmod(0o555)
    try:
        split = data.load_dataset("cifar10jpg", tmp_path / "data", progress=False)
        assert list(folder.glob("*.npz")) == []
        assert len(list(cache.glob("cifar10jpg-*.npz"))) == 1
        assert split.class_names == ("ant", "cat", "dog")
        check_jpg_split(split, written, 2, 1)
        monkeypatch.setattr(data.cifar, "_decode_cifar10_jpg", lambda *a, **k: pytest.fail("decoded twice"))
        data.load_dataset("cifar10jpg", tmp_path / "data", progress=False)
    finally:
        folder.chmod(0o755)


def test_cifar10jpg_missing(tmp_path):
    with pytest.raises(data.MissingDataError) as err:
        data.load_dataset("cifar10jpg", tmp_path)
    assert str(tmp_path / "cifar10-jpg" / "cifar10-jpg.tar.gz") in one_line(err.value)


# --------------------------------------------------------------- Clothing1M


def write_kv(base: Path, name: str, pairs: list[tuple[str, int]]) -> None:
    (base / name).write_text("".join(f"{k} {v}\n" for k, v in pairs))


def test_clothing1m_loading(tmp_path):
    written = files.write_clothing1m(tmp_path, seed=12)
    c = data.load_clothing1m(tmp_path)
    assert c.root == written["base"] and c.class_names == data.CLOTHING1M_CLASSES and c.num_classes == 14
    assert c.noisy_labels == written["noisy_labels"] and c.clean_labels == written["clean_labels"]
    for part, kv in (("noisy_train", c.noisy_labels), ("clean_train", c.clean_labels),
                     ("clean_val", c.clean_labels), ("clean_test", c.clean_labels)):
        listed = getattr(c, part)
        assert listed.paths == written[part]
        assert listed.labels.dtype == np.int64
        assert listed.labels.tolist() == [kv[k] for k in written[part]]
    # the layout may also sit directly in the root
    files.write_clothing1m(tmp_path / "flat", seed=12, subdir=None, category_names=False)
    flat = data.load_clothing1m(tmp_path / "flat")
    assert flat.root == (tmp_path / "flat").resolve() and flat.clean_test.paths == written["clean_test"]


def test_clothing1m_overlap_transition_by_hand(tmp_path):
    # one image per class with equal labels, plus three clean-0 images labelled 1, 1, 2
    # and one clean-5 image labelled 5: row 0 = (1, 2, 1) / 4, row 5 = e_5, others e_i
    both = [(f"images/0/00/{i}.jpg", i, i) for i in range(14)]
    both += [("images/1/00/a.jpg", 0, 1), ("images/1/00/b.jpg", 0, 1), ("images/1/00/c.jpg", 0, 2),
             ("images/1/00/d.jpg", 5, 5)]
    base = tmp_path / "clothing1m"
    base.mkdir()
    write_kv(base, "clean_label_kv.txt", [(k, c) for k, c, _ in both] + [("images/2/00/x.jpg", 3)])
    write_kv(base, "noisy_label_kv.txt", [(k, n) for k, _, n in both] + [("images/3/00/y.jpg", 9)])
    for name in ("noisy_train", "clean_train", "clean_val", "clean_test"):
        (base / f"{name}_key_list.txt").write_text("images/0/00/1.jpg\n")
    T = data.clothing1m_overlap_transition(data.load_clothing1m(tmp_path), split="all")
    expected = np.eye(14)
    expected[0, :3] = [0.25, 0.5, 0.25]
    np.testing.assert_allclose(T, expected)
    # a class without overlapping images cannot be estimated
    write_kv(base, "clean_label_kv.txt", [(k, c) for k, c, _ in both if c != 11])
    with pytest.raises(ValueError, match=r"11 \(Dress\)"):
        data.clothing1m_overlap_transition(data.load_clothing1m(tmp_path), split="all")
    # the default counts the clean training list only: here one image, so 13 classes are empty
    with pytest.raises(ValueError, match=r"'train'.*0 \(T-Shirt\)"):
        data.clothing1m_overlap_transition(data.load_clothing1m(tmp_path))
    with pytest.raises(ValueError, match="unknown split 'test'"):
        data.clothing1m_overlap_transition(data.load_clothing1m(tmp_path), split="test")


@pytest.mark.parametrize("split", ["train", "all"])
def test_clothing1m_overlap_transition_matches_counting(tmp_path, split):
    written = files.write_clothing1m(tmp_path, seed=13, n_both=600)
    T = data.clothing1m_overlap_transition(data.load_clothing1m(tmp_path), split=split)
    keys = written["clean_train"] if split == "train" else written["clean_labels"]
    counts = np.zeros((14, 14))
    for key in keys:
        if key in written["noisy_labels"]:
            counts[written["clean_labels"][key], written["noisy_labels"][key]] += 1
    assert counts.sum() < len(written["clean_labels"])  # some clean images have no noisy label
    np.testing.assert_allclose(T, counts / counts.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(T.sum(axis=1), 1.0)


def test_clothing1m_missing_files(tmp_path):
    written = files.write_clothing1m(tmp_path)
    (written["base"] / "clean_val_key_list.txt").unlink()
    with pytest.raises(data.MissingDataError) as err:
        data.load_clothing1m(tmp_path)
    assert str(written["base"] / "clean_val_key_list.txt") in one_line(err.value)
    assert err.value.missing == (str(written["base"] / "clean_val_key_list.txt"),)
    with pytest.raises(data.MissingDataError, match="noisy_label_kv.txt"):
        data.load_clothing1m(tmp_path / "nothing")


def test_image_list_dataset(tmp_path):
    written = files.write_clothing1m(tmp_path, n_noisy_only=4, n_clean_only=3, n_both=14, images=True)
    c = data.load_clothing1m(tmp_path)
    ds = data.ImageListDataset(c.root, c.clean_test.paths, c.clean_test.labels)
    ds.check_files()
    image, label = ds[0]
    assert image.mode == "RGB" and image.size == (32, 32) and label == c.clean_test.labels[0]
    tensors = data.ImageListDataset(c.root, c.clean_test.paths, c.clean_test.labels,
                                    transform=lambda im: torch.from_numpy(np.asarray(im).copy()))
    assert tuple(tensors[1][0].shape) == (32, 32, 3)
    assert len(ds) == len(written["clean_test"])
    (c.root / c.clean_test.paths[0]).unlink()
    with pytest.raises(data.MissingDataError, match=c.clean_test.paths[0]):
        ds[0]
    with pytest.raises(data.MissingDataError, match="1 image"):
        ds.check_files()
    with pytest.raises(ValueError, match="labels"):
        data.ImageListDataset(c.root, ["a.jpg"], [0, 1])


# --------------------------------------------------------- image operations


def test_pixel_mean_and_prepare_images():
    rng = np.random.default_rng(14)
    x = rng.integers(0, 256, size=(9000, 3, 8, 8), dtype=np.uint8)  # more than one chunk
    mean = data.pixel_mean(torch.from_numpy(x))
    expected = (x / 255.0).mean(axis=0)
    assert mean.dtype == torch.float32 and tuple(mean.shape) == (3, 8, 8)
    np.testing.assert_allclose(mean.numpy(), expected, rtol=0, atol=1e-6)
    prepared = data.prepare_images(torch.from_numpy(x[:5]), mean)
    assert prepared.dtype == torch.float32 and prepared.device == torch.device("cpu")
    np.testing.assert_allclose(prepared.numpy(), x[:5] / 255.0 - mean.numpy(), rtol=0, atol=1e-6)


def candidates(image: torch.Tensor, p: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop offset and flip of one zero-padded image, computed directly."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * p, w + 2 * p, dtype=image.dtype)
    padded[:, p:p + h, p:p + w] = image
    out = []
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            out += [(dy, dx, False, crop), (dy, dx, True, crop.flip(-1))]
    return out


def test_augment_batch_outputs_are_padded_crops_and_flips():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 10, 12, generator=gen) + 0.5  # nonzero, so padding shows
    out = data.augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    seen_flips, seen_offsets = set(), set()
    for image, result in zip(x, out):
        matches = [(dy, dx, f) for dy, dx, f, crop in candidates(image, 4) if torch.equal(crop, result)]
        assert len(matches) == 1
        seen_offsets.add(matches[0][:2])
        seen_flips.add(matches[0][2])
    assert seen_flips == {False, True}
    assert len(seen_offsets) > 10
    again = data.augment_batch(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert not torch.equal(out, data.augment_batch(x, torch.Generator().manual_seed(2)))


def test_augment_batch_without_padding_only_flips():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4).repeat(20, 1, 1, 1)
    out = data.augment_batch(x, torch.Generator().manual_seed(3), padding=0)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped | same).all() and flipped.any() and same.any()
    torch.manual_seed(0)
    assert data.augment_batch(x).shape == x.shape  # global generator


# ---------------------------------------------------------------- real data


def read_gz_idx(path: Path) -> np.ndarray:
    """Independent IDX reader: gunzip, 4-byte magic, big-endian dimensions."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def real_mnist_file(root: Path, name: str) -> Path:
    for candidate in (root / "MNIST" / "raw" / f"{name}.gz", root / "MNIST" / "raw" / name):
        if candidate.is_file():
            return candidate
    pytest.skip(f"{name} only in mnist.npz form")


@pytest.mark.real_data("mnist10k")
def test_real_mnist10k(real_data_root):
    split = data.load_dataset("mnist10k", real_data_root)
    assert_split_shapes(split, (7200, 800, 2000), (784,), torch.float32)
    images = read_gz_idx(real_mnist_file(real_data_root, "t10k-images-idx3-ubyte")).reshape(10000, 784)
    labels = read_gz_idx(real_mnist_file(real_data_root, "t10k-labels-idx1-ubyte"))
    x_all = torch.cat([split.x_train, split.x_val, split.x_test])
    y_all = torch.cat([split.y_train, split.y_val, split.y_test])
    assert float(x_all.min()) == 0.0 and float(x_all.max()) == 1.0
    assert abs(float(x_all.mean()) - 0.13) < 0.01
    # pixel checksum: the parts hold exactly the bytes of the t10k file
    assert int((x_all * 255).round().to(torch.int64).sum()) == int(images.astype(np.int64).sum())
    # every image keeps the label the label file gives it
    label_of: dict[bytes, set] = {}
    for row, lab in zip(images, labels):
        label_of.setdefault(row.tobytes(), set()).add(int(lab))
    pixels = (x_all * 255).round().to(torch.uint8).numpy()
    assert all(int(lab) in label_of[row.tobytes()] for row, lab in zip(pixels, y_all))
    assert Counter(y_all.tolist()) == Counter(labels.tolist())
    for c in range(10):
        assert abs(int((split.y_test == c).sum()) - 0.2 * (labels == c).sum()) < 1


@pytest.mark.real_data("mnist10k")
def test_real_mnist_needs_the_training_images(real_data_root):
    if data.missing_files("mnist", real_data_root):
        with pytest.raises(data.MissingDataError, match="train-images-idx3-ubyte"):
            data.load_dataset("mnist", real_data_root)
    else:  # a complete MNIST: the paper's split
        assert data.load_dataset("mnist", real_data_root).sizes == {"train": 54000, "val": 6000, "test": 10000}


@pytest.mark.real_data("cifar10jpg")
def test_real_cifar10jpg(real_data_root):
    # decodes the 60,000 JPEGs once per machine (seconds), then reads the cache
    split = data.load_dataset("cifar10jpg", real_data_root)
    assert_split_shapes(split, (45000, 5000, 10000), (3, 32, 32), torch.uint8)
    assert split.class_names == data.CIFAR10_CLASSES
    train_counts = torch.bincount(torch.cat([split.y_train, split.y_val]), minlength=10)
    assert train_counts.tolist() == [5000] * 10
    assert torch.bincount(split.y_test, minlength=10).tolist() == [1000] * 10
    assert len(set(split.y_test[:100].tolist())) == 10  # the test order mixes the classes
    mean = data.pixel_mean(split.x_train)
    assert 0.4 < float(mean.mean()) < 0.55
    # spot check: the first training image of class 'cat' is the PIL decode of its JPEG
    source = data.cifar._cifar10jpg_source(real_data_root)
    if source.is_file():
        with tarfile.open(source) as tf:
            member = next(m for m in tf if m.name.endswith("train/cat/0000.jpg"))
            jpeg = tf.extractfile(member).read()
    else:
        jpeg = (source / "train" / "cat" / "0000.jpg").read_bytes()
    expected = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    x, y = full_training_order(split, 50000)
    np.testing.assert_array_equal(x[3 * 5000].numpy(), expected.transpose(2, 0, 1))
    assert int(y[3 * 5000]) == 3


def test_split_arrays_holds_out_the_papers_validation_part():
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 4), dtype=np.float32), rng.integers(0, 3, 50)
    x_test, y_test = rng.random((7, 4), dtype=np.float32), rng.integers(0, 3, 7)
    split = data.split_arrays("mine", x, y, x_test, y_test, description="my data")
    train_idx, val_idx = data.holdout_split(50, 0.1, 0)
    assert split.sizes == {"train": 45, "val": 5, "test": 7}
    np.testing.assert_array_equal(split.x_val.numpy(), x[val_idx])
    np.testing.assert_array_equal(split.y_train.numpy(), y[train_idx])
    np.testing.assert_array_equal(split.y_test.numpy(), y_test)
    assert split.class_names == ("0", "1", "2") and split.description == "my data"
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 2\)"):
        data.split_arrays("mine", x, y, x_test, y_test, class_names=("a", "b"))
    with pytest.raises(ValueError, match="x_test has 6 rows but y_test has 7"):
        data.split_arrays("mine", x, y, x_test[:6], y_test)
    with pytest.raises(ValueError, match="1-d array of integer labels"):
        data.split_arrays("mine", x, y.astype(float), x_test, y_test)


# ------------------------------------------------------------- damaged files


def truncate(path: Path, keep: float = 0.5) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


def damaged_mnist(root: Path) -> Path:
    written = files.write_mnist_idx(root, n_train=200, n_test=40)
    return truncate(written["paths"]["train-images-idx3-ubyte"])


def damaged_imdb(root: Path) -> Path:
    return truncate(files.write_aclimdb(root, n_train_per_class=20, tarball=True)["path"])


def damaged_cifar10(root: Path) -> Path:
    files.write_cifar10_pickles(root)
    return truncate(root / "cifar-10-batches-py" / "data_batch_3")


def damaged_cifar10jpg(root: Path) -> Path:
    return truncate(files.write_cifar10_jpg(root, per_class_train=20)["path"])


DAMAGED = {"mnist": damaged_mnist, "imdb": damaged_imdb, "cifar10": damaged_cifar10,
           "cifar10jpg": damaged_cifar10jpg}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_file_is_named_in_one_line(name, tmp_path):
    path = DAMAGED[name](tmp_path)
    with pytest.raises(data.CorruptDataError) as err:
        data.load_dataset(name, tmp_path, progress=False) if name == "cifar10jpg" else data.load_dataset(
            name, tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "truncated or damaged" in message or "size mismatch" in message
    assert "again" in message or "intact copy" in message  # what to do


@pytest.mark.parametrize("name", ["mnist", "imdb"])
def test_the_command_line_reports_a_damaged_file_without_a_traceback(name, tmp_path):
    path = DAMAGED[name](tmp_path / "data")
    experiment = {"mnist": "mnist_fc", "imdb": "imdb_embedding"}[name]
    result = subprocess.run(
        [sys.executable, "-m", "losscorrection.cli", "run", experiment, "--method", "cross_entropy",
         "--noise", "none", "--profile", "smoke", "--device", "cpu", "--data-root", str(tmp_path / "data"),
         "--results-dir", str(tmp_path / "results")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr


# ------------------------------------------------------------------ CIFAR-10N


def test_cifar10n_labels_follow_the_jpeg_copys_order(tmp_path):
    written = files.write_cifar10n(tmp_path)
    human = data.load_cifar10n_labels(tmp_path)
    order = sorted(range(12), key=lambda i: written["paths"][i].split("/")[-2:])  # class folder, then file
    np.testing.assert_array_equal(human.clean, written["labels"]["clean_label"][order])
    np.testing.assert_array_equal(human["worst"], written["labels"]["worse_label"][order])
    assert list(human.clean) == sorted(human.clean)  # the copy's training images go class by class
    noisy = written["labels"]["aggre_label"]
    assert human.noise_rate("aggre") == pytest.approx((noisy != written["labels"]["clean_label"]).mean())
    T = human.transition("aggre", num_classes=3)
    expected = np.zeros((3, 3))
    for c, h in zip(written["labels"]["clean_label"], noisy):
        expected[c, h] += 1
    np.testing.assert_allclose(T, expected / expected.sum(axis=1, keepdims=True))
    with pytest.raises(ValueError, match="unknown CIFAR-10N label set 'random4'"):
        human["random4"]


def test_cifar10n_missing_and_damaged_files(tmp_path):
    with pytest.raises(data.MissingDataError, match="CIFAR-10_human.pt"):
        data.load_cifar10n_labels(tmp_path)
    files.write_cifar10n(tmp_path)
    path = truncate(tmp_path / "cifar10n" / "CIFAR-10_human.pt")
    with pytest.raises(data.CorruptDataError) as err:
        data.load_cifar10n_labels(tmp_path)
    assert str(err.value).startswith(f"{path}: ") and "intact copy" in str(err.value)


class _RunsACommand:
    """Pickles as a call of ``os.system``: what a malicious labels file could hold."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar10n_labels_file_that_asks_to_run_code_is_refused_unrun(tmp_path):
    written = files.write_cifar10n(tmp_path)
    marker = tmp_path / "ran"
    labels = dict(written["labels"], clean_label=_RunsACommand(f"touch {marker}"))
    path = tmp_path / "cifar10n" / "CIFAR-10_human.pt"
    torch.save(labels, path)
    with pytest.raises(data.CorruptDataError) as err:
        data.load_cifar10n_labels(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: holds more than label arrays: it asks for {os.system.__module__}.system, "
                              "which is refused;") and "intact copy" in message
    assert "\n" not in message
    assert not marker.exists()  # refused before anything ran
    torch.save(written["labels"], path)  # the official format: NumPy int64 arrays
    assert data.load_cifar10n_labels(tmp_path).clean.dtype == np.int64


def test_cifar10n_mapping_must_agree_with_the_labels(tmp_path):
    files.write_cifar10n(tmp_path)
    mapping = tmp_path / "cifar10n" / "cifar10_train_index_to_jpgcopy.csv"
    lines = mapping.read_text().splitlines()
    index, clean, cls, path = lines[1].split(",")
    lines[1] = ",".join([index, str((int(clean) + 1) % 3), cls, path])
    mapping.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.CorruptDataError, match="disagree"):
        data.load_cifar10n_labels(tmp_path)


def test_cifar10n_on_the_real_jpeg_copy():
    root = find_real_data_root(("cifar10jpg",))
    if not (root / "cifar10n" / "CIFAR-10_human.pt").is_file():
        pytest.skip(f"no CIFAR-10N labels under {root}")
    human = data.load_cifar10n_labels(root)
    np.testing.assert_array_equal(human.clean, data.cifar10jpg_arrays(root, progress=False)["y_train"])
    rates = {name: human.noise_rate(name) for name in data.LABEL_SETS}
    # the rates the CIFAR-10N release states: aggre 9.03 %, random1 17.23 %, worst 40.21 %
    assert rates["aggre"] == pytest.approx(0.0903, abs=5e-4) and rates["worst"] == pytest.approx(0.4021, abs=5e-4)
    assert rates["random1"] == pytest.approx(0.1723, abs=5e-4)


def test_cifar10n_data_set_carries_the_human_labels_through_the_holdout(tmp_path):
    files.write_cifar10_jpg(tmp_path, per_class_train=4, classes=("airplane", "bird", "cat"))
    written = files.write_cifar10n(tmp_path)
    human = data.load_cifar10n_labels(tmp_path)
    split = data.load_dataset("cifar10n", tmp_path, validation_fraction=0.25, progress=False)
    train_idx, val_idx = data.holdout_split(12, 0.25, 0)
    assert set(split.label_sets) == set(data.LABEL_SETS)
    for name in data.LABEL_SETS:
        train, val = split.label_sets[name]
        np.testing.assert_array_equal(train.numpy(), human[name][train_idx])
        np.testing.assert_array_equal(val.numpy(), human[name][val_idx])
    np.testing.assert_array_equal(split.y_train.numpy(), human.clean[train_idx])
    assert "CIFAR-10N human labels" in split.description
    assert written["labels"]["worse_label"].shape == (12,)
    # a mapping that sends the human labels onto images of another class is refused
    mapping = tmp_path / "cifar10n" / "cifar10_train_index_to_jpgcopy.csv"
    mapping.write_text(mapping.read_text().replace("/airplane/", "/AIRPLANE/").replace("/cat/", "/airplane/")
                       .replace("/AIRPLANE/", "/cat/"))
    with pytest.raises(data.CorruptDataError, match="other classes"):
        data.load_dataset("cifar10n", tmp_path, progress=False)


def test_cifar10n_missing_files_are_named(tmp_path):
    assert any(p.endswith("cifar10-jpg.tar.gz") for p in data.missing_files("cifar10n", tmp_path))
    files.write_cifar10_jpg(tmp_path, per_class_train=4, classes=("airplane", "bird", "cat"))
    assert [Path(p).name for p in data.missing_files("cifar10n", tmp_path)] == [
        "CIFAR-10_human.pt", "cifar10_train_index_to_jpgcopy.csv"]


# ----------------------------------------------- the released code's preprocessing


def test_shift_images_match_keras_affine_transform_per_image():
    """Keras 2.0-2.1.4's ImageDataGenerator shifts with scipy's affine_transform
    (identity matrix, offset (tx, ty), spline order 0, mode 'nearest'), then flips."""
    from scipy import ndimage

    from losscorrection.data import augmentation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3, 32, 32)).astype(np.float32)
    shifts = rng.uniform(-3.2, 3.2, size=(8, 2))
    shifts[0] = (3.2, -3.2)  # the extremes: three border rows and columns repeated
    shifts[1] = (0.0, 0.0)
    shifts[2] = (-0.49, 0.51)  # rounds to (0, +1)
    flips = np.array([False, True, True, False, True, False, True, False])
    out = augmentation.shift_images(torch.from_numpy(x), torch.from_numpy(shifts).float(), torch.from_numpy(flips))
    for k in range(len(x)):
        expected = np.stack([ndimage.affine_transform(channel, np.eye(2), offset=shifts[k], order=0, mode="nearest")
                             for channel in x[k]])
        if flips[k]:
            expected = expected[:, :, ::-1]
        np.testing.assert_array_equal(out[k].numpy(), expected)
    np.testing.assert_array_equal(out[1].numpy(), x[1][:, :, ::-1])  # no shift: only the flip


def test_shift_flip_batch_shifts_up_to_a_tenth_of_the_image_and_flips_half():
    """Pixel (i, j) holds 100 i + j, so each output names its source pixels: rows
    and columns move by the rounding of U(-3.2, 3.2) (P(0) = P(±1) = P(±2) =
    1/6.4, P(±3) = 0.7/6.4), drawn independently, and half the images are flipped."""
    from losscorrection.data import augmentation

    n = 4000
    grid = 100 * torch.arange(32.0)[:, None] + torch.arange(32.0)[None, :]
    out = augmentation.shift_flip_batch(grid.expand(n, 1, 32, 32).clone(), torch.Generator().manual_seed(0))
    source_rows, source_cols = (out[:, 0] // 100).long(), (out[:, 0] % 100).long()
    flipped = source_cols[:, 16, 15] > source_cols[:, 16, 16]
    row_shift = source_rows[:, 16, 16] - 16
    col_shift = torch.where(flipped, source_cols[:, 16, 15], source_cols[:, 16, 16]) - 16
    probability = {s: (0.7 if abs(s) == 3 else 1.0) / 6.4 for s in range(-3, 4)}
    for shift in (row_shift, col_shift):
        assert set(shift.tolist()) == set(probability)
        for s, p in probability.items():
            assert abs((shift == s).float().mean().item() - p) < 4 * (p * (1 - p) / n) ** 0.5
    assert abs(flipped.float().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5
    assert abs(np.corrcoef(row_shift.numpy(), col_shift.numpy())[0, 1]) < 0.05
    again = augmentation.shift_flip_batch(grid.expand(n, 1, 32, 32).clone(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again, rtol=0, atol=0)  # the generator alone decides


def test_pixel_mean_of_training_and_validation_images_in_0_255():
    """The released code: ``X - X_train.mean(axis=0)`` over all 50,000 training
    images (training and validation), per pixel and channel, pixels in 0..255."""
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(40, 3, 8, 8), dtype=np.uint8)
    val = rng.integers(0, 256, size=(9, 3, 8, 8), dtype=np.uint8)
    means = np.concatenate([train, val]).mean(axis=0)  # float64, (3, 8, 8)
    mean = data.pixel_mean([torch.from_numpy(train), torch.from_numpy(val)], scale=1.0)
    np.testing.assert_allclose(mean.numpy(), means, rtol=1e-6)
    prepared = data.prepare_images(torch.from_numpy(val), mean, scale=1.0)
    np.testing.assert_allclose(prepared.numpy(), (val - means).astype(np.float32), rtol=0, atol=1e-4)
    one = torch.from_numpy(train)
    torch.testing.assert_close(data.pixel_mean([one]), data.pixel_mean(one), rtol=0, atol=0)
    with pytest.raises(ValueError, match="one image shape"):
        data.pixel_mean([one, torch.from_numpy(val[:, :, :4])])
