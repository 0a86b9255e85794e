"""The IMDB reviews of the sentiment experiments (Section 5.1): 22,500 / 2,500 /
25,000 reviews after the 10% hold-out, from the Keras ``imdb.npz`` (whose lists
hold word ranks, 1 = most frequent; the start marker and the +3 offset are
added by Keras' ``load_data``, not stored) or from the Stanford text files
(``aclImdb/`` or its tarball). Reviews become int64 ``(n, maxlen)`` token ids:
:func:`tokenize` splits the text, :func:`build_vocabulary` numbers the most
frequent training words (0 padding, 1 out of vocabulary, 2.. the words) and
:func:`pad_sequences` keeps the last ``maxlen`` ids, padded at the front.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import MissingDataError, _missing, _tar_members, reading
from .splits import FullData, _fixed_order

__all__ = [
    "ACLIMDB_URL",
    "IMDB_NPZ_URL",
    "IMDB_WORD_INDEX_URL",
    "build_vocabulary",
    "pad_sequences",
    "tokenize",
]

IMDB_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
ACLIMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"

_TOKEN_RE = re.compile(r"[a-z0-9']+")
_ACLIMDB_RE = re.compile(r"(?:^|/)aclImdb/(train|test)/(neg|pos)/([^/]+\.txt)$")
_IMDB_LAYOUTS = (
    "Keras <root>/imdb.npz (optionally with <root>/imdb_word_index.json), "
    "Stanford <root>/aclImdb/{train,test}/{neg,pos}/*.txt or the tarball <root>/aclImdb_v1.tar.gz"
)
_IMDB_GET = f"get {IMDB_NPZ_URL} (or pass download=True) or {ACLIMDB_URL}"


def tokenize(text: str) -> list[str]:
    """Lower-case words of a review: ``<br />`` becomes a space, tokens match ``[a-z0-9']+``."""
    return _TOKEN_RE.findall(text.lower().replace("<br />", " "))


def build_vocabulary(sequences: Iterable[Iterable[Any]], size: int = 5000) -> dict[Any, int]:
    """Token ids of the ``size - 2`` most frequent tokens of ``sequences``.

    Frequency is the total number of occurrences; ties are broken by the
    tokens' natural order (alphabetical for words, rank for Keras word ranks).
    Ids start at 2: id 0 is padding and id 1 stands for every other token.
    """
    if size < 3:
        raise ValueError(f"vocabulary size must be at least 3, got {size}")
    counts: Counter = Counter()
    for seq in sequences:
        counts.update(seq)
    ordered = sorted(counts, key=lambda token: (-counts[token], token))
    return {token: i + 2 for i, token in enumerate(ordered[: size - 2])}


def pad_sequences(sequences: Sequence[Sequence[int]], maxlen: int) -> np.ndarray:
    """int64 ``(n, maxlen)``, like Keras ``pad_sequences`` defaults: sequences
    longer than ``maxlen`` keep their last ``maxlen`` ids; shorter ones are
    padded with 0 at the front."""
    if maxlen < 1:
        raise ValueError(f"maxlen must be positive, got {maxlen}")
    out = np.zeros((len(sequences), maxlen), dtype=np.int64)
    for i, seq in enumerate(sequences):
        tail = list(seq)[-maxlen:]
        if tail:
            out[i, maxlen - len(tail):] = tail
    return out


def _review_key(name: str) -> tuple[int, str]:
    stem = name.rsplit("/", 1)[-1]
    head = stem.split("_", 1)[0]
    return (int(head) if head.isdigit() else -1, stem)


def _aclimdb_texts(source: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{"train": (texts, labels), "test": ...}`` from the folder or the tarball;
    within a part, negative reviews then positive ones, by file number."""
    found: dict[tuple[str, str], list[tuple[tuple[int, str], str]]] = {}
    if source.is_dir():
        for part in ("train", "test"):
            for label in ("neg", "pos"):
                folder = source / part / label
                files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
                found[(part, label)] = [
                    (_review_key(p.name), p.read_text(encoding="utf-8", errors="replace")) for p in files
                ]
    else:
        with reading(source, f"delete it and get it again from {ACLIMDB_URL}"):
            for match, content in _tar_members(source, _ACLIMDB_RE):
                text = content.decode("utf-8", errors="replace")
                found.setdefault((match[1], match[2]), []).append((_review_key(match[3]), text))
    out = {}
    for part in ("train", "test"):
        texts: list[str] = []
        labels: list[int] = []
        for y, label in enumerate(("neg", "pos")):
            reviews = sorted(found.get((part, label), []))
            texts += [t for _, t in reviews]
            labels += [y] * len(reviews)
        if not texts:
            raise ValueError(f"{source}: no {part}/neg or {part}/pos reviews found")
        out[part] = (texts, np.asarray(labels, dtype=np.int64))
    return out


def _imdb_source(root: Path, source: str, download: bool) -> tuple[str, Path]:
    npz = root / "imdb.npz"
    folder, tarball = root / "aclImdb", root / "aclImdb_v1.tar.gz"
    if source not in ("auto", "npz", "aclimdb"):
        raise ValueError(f"unknown IMDB source {source!r}; known: auto, npz, aclimdb")
    if source in ("auto", "npz") and npz.is_file():
        return "npz", npz
    if source in ("auto", "aclimdb"):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return "aclimdb", folder
        if tarball.is_file():
            return "aclimdb", tarball
    if download and source in ("auto", "npz"):
        from torchvision.datasets.utils import download_url

        download_url(IMDB_NPZ_URL, str(root), filename="imdb.npz")
        return "npz", npz
    wanted = {"npz": [npz], "aclimdb": [folder, tarball], "auto": [npz, folder, tarball]}[source]
    raise _missing("IMDB", [" or ".join(str(p) for p in wanted)], _IMDB_LAYOUTS, _IMDB_GET)


def _load_imdb(
    root: Path, download: bool, vocabulary_size: int = 5000, maxlen: int = 400, source: str = "auto"
) -> FullData:
    kind, path = _imdb_source(root, source, download)
    words: tuple[str, ...] | None = None
    if kind == "npz":
        with reading(path, f"delete it and get it again from {IMDB_NPZ_URL}"), np.load(path, allow_pickle=True) as f:
            raw = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        train = [[int(w) for w in seq] for seq in raw["x_train"]]
        test = [[int(w) for w in seq] for seq in raw["x_test"]]
        y_train, y_test = raw["y_train"].astype(np.int64), raw["y_test"].astype(np.int64)
        vocab = build_vocabulary(train, vocabulary_size)
        index_file = root / "imdb_word_index.json"
        if index_file.is_file():
            by_rank = {int(r): w for w, r in json.loads(index_file.read_text(encoding="utf-8")).items()}
            words = ("<pad>", "<oov>", *(by_rank.get(r, f"#{r}") for r in vocab))
        origin = f"Keras {path.name} (word ranks)"
    else:
        parts = _aclimdb_texts(path)
        train = [tokenize(t) for t in parts["train"][0]]
        test = [tokenize(t) for t in parts["test"][0]]
        y_train, y_test = parts["train"][1], parts["test"][1]
        vocab = build_vocabulary(train, vocabulary_size)
        words = ("<pad>", "<oov>", *vocab)
        origin = f"Stanford {path.name} text"
    x_train = pad_sequences([[vocab.get(t, 1) for t in seq] for seq in train], maxlen)
    x_test = pad_sequences([[vocab.get(t, 1) for t in seq] for seq in test], maxlen)
    order = _fixed_order(len(y_test))
    return FullData(
        x_train, y_train, x_test[order], y_test[order], ("negative", "positive"),
        f"IMDB movie reviews ({origin}): {len(y_train):,} training reviews with 10% held out for "
        f"validation, {len(y_test):,} test reviews; {vocabulary_size:,}-word vocabulary of the training "
        f"reviews (0 padding, 1 out of vocabulary), sequences of {maxlen} tokens (last tokens kept, "
        "padded at the front)",
        words,
    )


def _imdb_missing(root: Path) -> list[str]:
    """The IMDB layouts that loading would report missing (none when one is there)."""
    try:
        _imdb_source(root, "auto", download=False)
    except MissingDataError as err:
        return list(err.missing)
    return []
