"""The models of the IMDB sentiment experiments (§5.1).

:class:`EmbeddingClassifier`: a word embedding of dimension 50 with spatial
dropout 0.8, ReLU and a dense output layer over the 400 flattened positions;
:class:`LSTMClassifier`: a 256-dimensional embedding, an LSTM of 512 units, a
dense ReLU layer of 512 with dropout 0.5 and the output layer. Both take int64
token ids and return logits, optionally through the §5.2
:func:`~losscorrection.models.layers.output_head`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gathered import gathered_linear
from .layers import SpatialDropout1d, _apply_head, _check_rate, _he_normal, _init_linear, _uniform, output_head

__all__ = ["EmbeddingClassifier", "LSTMClassifier"]


class EmbeddingClassifier(nn.Module):
    """The word-embedding model of the IMDB experiments (§5.1).

    ``Embedding(vocab_size, embedding_dim=50) -> spatial dropout (0.8) -> ReLU
    -> flatten -> Linear(length * embedding_dim, num_classes)`` and, with
    ``bn_head``, :func:`output_head`. The dropout follows the released code's
    ``SpatialDropout1D``: a dropped embedding dimension is zero at every
    position of the review (:class:`SpatialDropout1d`).

    Computed as :func:`~losscorrection.models.gathered.gathered_linear` over
    ``relu(embedding.weight)``: the dropout multipliers are non-negative, so
    ``relu(keep * E[x]) = keep * relu(E)[x]`` and the ReLU runs once per
    vocabulary row, not per token; the leading padding (id ``padding_id``,
    0 in Keras' ``pad_sequences``) is summed in closed form, not gathered.

    Init: embedding uniform in [-0.05, 0.05]; output layer uniform in
    [-0.05, 0.05] as the text says for layers not followed by a ReLU
    (``output_init="uniform"``), or He normal as the released code has it
    (``output_init="he_normal"``); zero bias.

    Input int64 token ids ``(n, length)`` (reviews padded or truncated to
    ``length``, 400 in the paper); output logits ``(n, num_classes)``.
    On the CPU the compiled kernel of :mod:`.native` computes the body where it
    can be had (class attribute ``native_kernel``; same numbers either way).
    """

    native_kernel: bool = True

    def __init__(
        self,
        vocab_size: int = 5000,
        length: int = 400,
        embedding_dim: int = 50,
        spatial_dropout: float = 0.8,
        num_classes: int = 2,
        bn_head: bool = False,
        padding_id: int | None = 0,
        output_init: str = "uniform",
    ) -> None:
        super().__init__()
        if output_init not in ("uniform", "he_normal"):
            raise ValueError(f"unknown output_init {output_init!r}; known: uniform, he_normal")
        self.length = int(length)
        self.padding_id = padding_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        _uniform(self.embedding.weight)
        self.spatial_dropout = SpatialDropout1d(spatial_dropout)
        self.output = _init_linear(nn.Linear(self.length * embedding_dim, num_classes), relu_follows=False)
        if output_init == "he_normal":
            _he_normal(self.output.weight)
        self.head = output_head(num_classes) if bn_head else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(f"expected token ids of shape (n, {self.length}), got {tuple(x.shape)}")
        keep = self.spatial_dropout.keep_mask(x.shape[0], self.embedding.embedding_dim, self.embedding.weight)
        logits = gathered_linear(x, torch.relu(self.embedding.weight), keep, self.output.weight, self.padding_id,
                                 native_kernel=self.native_kernel)
        return _apply_head(self.head, logits + self.output.bias)


class LSTMClassifier(nn.Module):
    """The word-embedding + LSTM model of the IMDB experiments (§5.1).

    ``Embedding(vocab_size, 256) -> LSTM(512) -> Linear(512) -> ReLU ->
    Dropout(0.5) -> Linear(num_classes)`` and, with ``bn_head``,
    :func:`output_head`. The LSTM reads the sequence left to right
    (``batch_first``) and the classifier takes its hidden state at the *last*
    time step: sequences are padded with 0 at the front, so the last step is
    the end of the review. Any sequence length works.

    Init: embedding uniform in [-0.05, 0.05]; LSTM input weights uniform in
    [-0.05, 0.05] (the released code's ``kernel_initializer='uniform'``),
    recurrent weights orthogonal and forget-gate bias 1, other biases 0
    (the Keras LSTM defaults the released code keeps; the text does not say);
    hidden dense layer He normal (fan_in); output layer uniform; zero biases.
    The released code differs from the text here: embedding 512, a spatial
    dropout of 0.8 on the embedding; we follow the text.

    Input int64 token ids ``(n, length)``; output logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int = 5000,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        dense: int = 512,
        dropout: float = 0.5,
        num_classes: int = 2,
        bn_head: bool = False,
    ) -> None:
        super().__init__()
        self.dropout = _check_rate(dropout, "dropout")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.dense = _init_linear(nn.Linear(hidden_size, dense), relu_follows=True)
        self.output = _init_linear(nn.Linear(dense, num_classes), relu_follows=False)
        self.head = output_head(num_classes) if bn_head else None
        _uniform(self.embedding.weight)
        _uniform(self.lstm.weight_ih_l0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        with torch.no_grad():  # PyTorch gate order: input, forget, cell, output
            self.lstm.bias_ih_l0[hidden_size : 2 * hidden_size] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        states, _ = self.lstm(self.embedding(x))
        h = F.dropout(torch.relu(self.dense(states[:, -1])), self.dropout, self.training)
        return _apply_head(self.head, self.output(h))
