"""Datasets with the paper's splits (Section 5), and image pre-processing on the training device.

Every loader returns a :class:`Split` of torch tensors with *clean* labels
(``int64``; label noise is added later, :mod:`losscorrection.noise`) under the
paper's protocol: 10% of the official training set held out for validation with
a fixed permutation (:func:`holdout_split`), the official test set for testing.
The data root is the ``data_root`` argument, else ``$LOSSCORR_DATA``, else
``./data`` (:func:`resolve_data_root`); a missing file raises
:class:`MissingDataError`, whose one-line message names the missing path(s),
the accepted layouts and where to get the data. The modules:

- :mod:`~losscorrection.data.mnist`: ``mnist`` (54,000 / 6,000 / 10,000),
  ``mnist10k`` (the MNIST test set re-split, 7,200 / 800 / 2,000) and
  scikit-learn's 8x8 ``digits``; float32 pixels in [0, 1];
- :mod:`~losscorrection.data.imdb`: ``imdb`` (22,500 / 2,500 / 25,000), int64
  token ids from the Keras ``imdb.npz`` or the Stanford text files;
- :mod:`~losscorrection.data.cifar`: ``cifar10``, ``cifar100`` (45,000 / 5,000 /
  10,000, uint8 ``(n, 3, 32, 32)``) and ``cifar10jpg``, CIFAR-10 decoded once
  from its JPEG copy into a cache;
- :mod:`~losscorrection.data.cifar10n`: CIFAR-10N's human labels in the JPEG
  copy's training order (:func:`load_cifar10n_labels`), and ``cifar10n``, the
  JPEG copy with them (``Split.label_sets``);
- :mod:`~losscorrection.data.lossless_subset`: the first 4,000 CIFAR-10 training
  images lossless and as JPEG, one partition (:func:`jpeg_penalty_splits`);
- :mod:`~losscorrection.data.clothing1m`: Clothing1M as a list of image files
  (:func:`load_clothing1m`, :class:`ImageListDataset`,
  :func:`clothing1m_overlap_transition`);
- :mod:`~losscorrection.data.registry`: :data:`DATASETS`, :func:`load_dataset`
  and :func:`missing_files`;
- :mod:`~losscorrection.data.splits`: :class:`Split`, the hold-outs and
  :func:`split_arrays` for your own data;
- :mod:`~losscorrection.data.augmentation`: :func:`pixel_mean`,
  :func:`prepare_images` (``x / 255 - mean``) and :func:`augment_batch` (random
  crop after 4-pixel zero padding, random flip) on the tensors' own device;
- :mod:`~losscorrection.data.files`: the data root, :class:`MissingDataError`
  and :class:`CorruptDataError`, reading compressed files and writing caches.
"""

# The public constants (DATA_ENV, CACHE_ENV, TEST_SPLIT_SEED, TEST_FRACTION, the *_URL)
# are importable from here, as they always were, without being in __all__.
from .augmentation import augment_batch, pixel_mean, prepare_images
from .cifar import CIFAR10_CLASSES, CIFAR10_URL, CIFAR100_URL, cifar10jpg_arrays
from .cifar10n import CIFAR10N_URL, LABEL_SETS, HumanLabels, load_cifar10n_labels
from .clothing1m import (
    CLOTHING1M_CLASSES, CLOTHING1M_URL, Clothing1M, ImageList, ImageListDataset, clothing1m_overlap_keys,
    clothing1m_overlap_transition, load_clothing1m,
)
from .files import CACHE_ENV, DATA_ENV, CorruptDataError, MissingDataError, resolve_data_root
from .imdb import (
    ACLIMDB_URL, IMDB_NPZ_URL, IMDB_WORD_INDEX_URL, encode_ranks, pad_sequences, rank_words, tokenize,
)
from .lossless_subset import LOSSLESS_SUBSET_FILE, jpeg_penalty_splits, load_lossless_subset
from .mnist import MNIST_NPZ_URL, MNIST_URL, read_idx_images, read_idx_labels
from .registry import DATASETS, load_dataset, missing_files, nominal_train_size
from .splits import TEST_FRACTION, TEST_SPLIT_SEED, Split, holdout_split, split_arrays, stratified_holdout

__all__ = [
    "CIFAR10_CLASSES",
    "CLOTHING1M_CLASSES",
    "DATASETS",
    "Clothing1M",
    "HumanLabels",
    "CorruptDataError",
    "ImageList",
    "ImageListDataset",
    "MissingDataError",
    "Split",
    "augment_batch",
    "cifar10jpg_arrays",
    "clothing1m_overlap_keys",
    "clothing1m_overlap_transition",
    "encode_ranks",
    "holdout_split",
    "jpeg_penalty_splits",
    "load_cifar10n_labels",
    "load_clothing1m",
    "load_dataset",
    "load_lossless_subset",
    "missing_files",
    "nominal_train_size",
    "pad_sequences",
    "pixel_mean",
    "prepare_images",
    "rank_words",
    "read_idx_images",
    "read_idx_labels",
    "resolve_data_root",
    "split_arrays",
    "stratified_holdout",
    "tokenize",
]
