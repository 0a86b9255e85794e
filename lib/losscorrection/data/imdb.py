"""The IMDB reviews of the sentiment experiments (Section 5.1): 22,500 / 2,500 /
25,000 reviews after the 10% hold-out, encoded as the paper's data were, Keras'
``imdb.npz`` through ``imdb.load_data(num_words=5000)``: words numbered by their
frequency rank over the whole corpus (training and test reviews), rank ``r``
becoming id ``r + 3`` when that is below the vocabulary size and the
out-of-vocabulary id 2 otherwise, a start id 1 in front of every review, and
:func:`pad_sequences` keeping the last ``maxlen`` ids, padded at the front with
0. The source is the Keras ``imdb.npz`` (which stores the ranks) or the
Stanford text files (``aclImdb/`` or its tarball), split into words by
:func:`tokenize` like Keras' ``text_to_word_sequence``, ranked by
:func:`rank_words`, and cached once encoded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import (
    MissingDataError, _missing, _read_cache, _tar_members, _user_cache_dir, _write_cache, reading, source_stamp,
)
from .splits import FullData, _fixed_order

__all__ = [
    "ACLIMDB_URL",
    "IMDB_NPZ_URL",
    "IMDB_WORD_INDEX_URL",
    "encode_ranks",
    "pad_sequences",
    "rank_words",
    "tokenize",
]

IMDB_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
ACLIMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"

_KERAS_FILTERS = str.maketrans({c: " " for c in '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'})
PAD_ID, START_ID, OOV_ID, INDEX_FROM = 0, 1, 2, 3  # Keras' imdb.load_data defaults
_CACHE_VERSION = 1
_ACLIMDB_RE = re.compile(r"(?:^|/)aclImdb/(train|test)/(neg|pos)/([^/]+\.txt)$")
_IMDB_LAYOUTS = (
    "Keras <root>/imdb.npz (optionally with <root>/imdb_word_index.json), "
    "Stanford <root>/aclImdb/{train,test}/{neg,pos}/*.txt or the tarball <root>/aclImdb_v1.tar.gz"
)
_IMDB_GET = f"get {IMDB_NPZ_URL} (or pass download=True) or {ACLIMDB_URL}"


def tokenize(text: str) -> list[str]:
    """The words of a review as Keras' ``text_to_word_sequence`` splits them: lower
    case, ``<br />`` and the punctuation ``!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~``
    become spaces (apostrophes stay: ``don't``), split on whitespace."""
    return text.lower().replace("<br />", " ").translate(_KERAS_FILTERS).split()


def rank_words(sequences: Iterable[Iterable[Any]]) -> dict[Any, int]:
    """Frequency rank of every token of ``sequences``: 1 for the most frequent, ties
    broken by the tokens' natural order (alphabetical for words)."""
    counts: Counter = Counter()
    for seq in sequences:
        counts.update(seq)
    ordered = sorted(counts, key=lambda token: (-counts[token], token))
    return {token: rank for rank, token in enumerate(ordered, 1)}


def encode_ranks(ranks: Iterable[int], vocabulary_size: int) -> list[int]:
    """Keras ``imdb.load_data(num_words=vocabulary_size)`` for one review of word
    ranks: :data:`START_ID` first, then ``rank + 3`` where that is below
    ``vocabulary_size``, :data:`OOV_ID` for the rarer words."""
    if vocabulary_size <= INDEX_FROM:
        raise ValueError(f"vocabulary size must be above {INDEX_FROM}, got {vocabulary_size}")
    return [START_ID] + [r + INDEX_FROM if r + INDEX_FROM < vocabulary_size else OOV_ID for r in ranks]


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
    if kind == "npz":
        encoded = _npz_encoded(root, path, vocabulary_size, maxlen)
        origin = f"Keras {path.name}"
    else:
        encoded = _text_encoded(path, vocabulary_size, maxlen)
        origin = f"Stanford {path.name} text, tokenised like Keras"
    order = _fixed_order(len(encoded["y_test"]))
    words = encoded.get("words")
    return FullData(
        encoded["x_train"], encoded["y_train"], encoded["x_test"][order], encoded["y_test"][order],
        ("negative", "positive"),
        f"IMDB movie reviews ({origin}): {len(encoded['y_train']):,} training reviews with 10% held out for "
        f"validation, {len(encoded['y_test']):,} test reviews; words ranked by frequency over all reviews, "
        f"ids below {vocabulary_size:,} kept (0 padding, 1 start, 2 out of vocabulary, rank + 3), "
        f"sequences of {maxlen} ids (last ids kept, padded at the front)",
        None if words is None else tuple(str(w) for w in words),
    )


def _vocabulary(by_rank: dict[int, str], vocabulary_size: int) -> np.ndarray:
    """The word of every id below ``vocabulary_size``."""
    special = ["<pad>", "<start>", "<oov>", "<unused>"]  # Keras never emits id 3 (rank 0)
    return np.array(special + [by_rank.get(i - INDEX_FROM, f"#{i - INDEX_FROM}")
                               for i in range(len(special), vocabulary_size)])


def _npz_encoded(root: Path, path: Path, vocabulary_size: int, maxlen: int) -> dict[str, np.ndarray]:
    """The Keras ``imdb.npz`` (lists of word ranks) encoded as ``imdb.load_data`` does."""
    with reading(path, f"delete it and get it again from {IMDB_NPZ_URL}"), np.load(path, allow_pickle=True) as f:
        raw = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    out = {part: pad_sequences([encode_ranks((int(w) for w in seq), vocabulary_size) for seq in raw[part]], maxlen)
           for part in ("x_train", "x_test")}
    out |= {part: raw[part].astype(np.int64) for part in ("y_train", "y_test")}
    index_file = root / "imdb_word_index.json"
    if index_file.is_file():
        by_rank = {int(r): w for w, r in json.loads(index_file.read_text(encoding="utf-8")).items()}
        out["words"] = _vocabulary(by_rank, vocabulary_size)
    return out


def _text_encoded(path: Path, vocabulary_size: int, maxlen: int) -> dict[str, np.ndarray]:
    """The Stanford reviews tokenised, ranked over the whole corpus and encoded like
    the Keras file, read from the cache when an earlier call wrote it."""
    name = f"imdb-v{_CACHE_VERSION}-{source_stamp(path, _ACLIMDB_RE)}-{vocabulary_size}-{maxlen}.npz"
    folders = [path.parent if path.is_file() else path, _user_cache_dir()]
    keys = ("x_train", "y_train", "x_test", "y_test", "words")
    for folder in folders:
        cached = _read_cache(folder / name, keys) if (folder / name).is_file() else None
        if cached is not None:
            return cached
    parts = _aclimdb_texts(path)
    tokens = {part: [tokenize(t) for t in parts[part][0]] for part in ("train", "test")}
    ranks = rank_words(tokens["train"] + tokens["test"])
    out = {f"x_{part}": pad_sequences([encode_ranks((ranks[w] for w in seq), vocabulary_size) for seq in tokens[part]],
                                      maxlen) for part in ("train", "test")}
    out |= {f"y_{part}": parts[part][1] for part in ("train", "test")}
    out["words"] = _vocabulary({r: w for w, r in ranks.items()}, vocabulary_size)
    _write_cache(out, folders, name, "encoded IMDB reviews")
    return out


def _imdb_missing(root: Path) -> list[str]:
    """The IMDB layouts that loading would report missing (none when one is there)."""
    try:
        _imdb_source(root, "auto", download=False)
    except MissingDataError as err:
        return list(err.missing)
    return []
