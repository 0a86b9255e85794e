"""The models of the IMDB sentiment experiments (§5.1).

:class:`EmbeddingClassifier`: a word embedding of dimension 50 with spatial
dropout 0.8, ReLU and a dense output layer over the 400 flattened positions;
:class:`LSTMClassifier`: a 256-dimensional embedding, an LSTM of 512 units, a
dense ReLU layer of 512 with dropout 0.5 and the output layer (options give
the released code's variant: a 512-dimensional embedding with spatial dropout
0.8 and an LSTM with Keras' :func:`hard_sigmoid` gates, run by
:func:`lstm_states`). Both take int64 token ids and return logits, optionally
through the §5.2 :func:`~losscorrection.models.layers.output_head`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gathered import gathered_linear
from .layers import SpatialDropout1d, _apply_head, _check_rate, _init_linear, _init_output, _uniform, output_head

__all__ = ["GATE_ACTIVATIONS", "EmbeddingClassifier", "LSTMClassifier", "hard_sigmoid", "lstm_states"]


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
        self.length = int(length)
        self.padding_id = padding_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        _uniform(self.embedding.weight)
        self.spatial_dropout = SpatialDropout1d(spatial_dropout)
        self.output = _init_output(nn.Linear(self.length * embedding_dim, num_classes), output_init)
        self.head = output_head(num_classes) if bn_head else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(f"expected token ids of shape (n, {self.length}), got {tuple(x.shape)}")
        keep = self.spatial_dropout.keep_mask(x.shape[0], self.embedding.embedding_dim, self.embedding.weight)
        logits = gathered_linear(x, torch.relu(self.embedding.weight), keep, self.output.weight, self.padding_id,
                                 native_kernel=self.native_kernel)
        return _apply_head(self.head, logits + self.output.bias)


GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")


def hard_sigmoid(x: Tensor) -> Tensor:
    """Keras 2's ``hard_sigmoid``, the default gate nonlinearity of its LSTM:
    ``clip(0.2 x + 0.5, 0, 1)``, that is 0 below -2.5, 1 above 2.5 and linear
    in between. Elementwise, any shape."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def lstm_states(inputs: Tensor, lstm: nn.LSTM, gate: Callable[[Tensor], Tensor] = torch.sigmoid) -> Tensor:
    """The hidden states of ``lstm`` over ``inputs`` with ``gate`` as the gate nonlinearity.

    ``lstm`` is a single-layer, unidirectional, ``batch_first`` ``nn.LSTM``;
    its weights are used in PyTorch's gate order (input, forget, cell,
    output). From ``h_0 = c_0 = 0``, for ``t = 1 .. L``::

        z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh     (4 H values)
        i, f, g, o = gate(z_i), gate(z_f), tanh(z_g), gate(z_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    With ``gate=torch.sigmoid`` this is what ``lstm`` itself computes;
    :func:`hard_sigmoid` gives the Keras LSTM of the authors' released code.
    The input projection is one product over all steps, the recurrence a
    loop over the ``L`` steps (slower than PyTorch's fused LSTM kernels).

    Input ``(n, L, d)``; output ``(n, L, H)``, ``h_1 .. h_L``.
    """
    if lstm.num_layers != 1 or lstm.bidirectional or not lstm.batch_first or lstm.proj_size or not lstm.bias:
        raise ValueError("lstm_states needs a single-layer, unidirectional, batch_first nn.LSTM with biases")
    n, length, _ = inputs.shape
    projected = F.linear(inputs, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)  # (n, L, 4H)
    h = inputs.new_zeros(n, lstm.hidden_size)
    c = inputs.new_zeros(n, lstm.hidden_size)
    states = []
    for t in range(length):
        z_i, z_f, z_g, z_o = (projected[:, t] + F.linear(h, lstm.weight_hh_l0)).chunk(4, dim=1)
        c = gate(z_f) * c + gate(z_i) * torch.tanh(z_g)
        h = gate(z_o) * torch.tanh(c)
        states.append(h)
    return torch.stack(states, dim=1)


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
    hidden dense layer He normal (fan_in); output layer uniform
    (``output_init="uniform"``) or He normal (``"he_normal"``); zero biases.

    The defaults follow the text. The authors' released code differs:
    embedding 512 (``embedding_dim``), ``SpatialDropout1D(0.8)`` on the
    embedding (``spatial_dropout``: a dropped embedding dimension is zero at
    every position of the review, :class:`SpatialDropout1d`), the Keras 2
    LSTM's :func:`hard_sigmoid` gates (``gate_activation="hard_sigmoid"``,
    computed by :func:`lstm_states`; ``"sigmoid"`` runs PyTorch's
    ``nn.LSTM``), a He-normal output layer and AdaGrad with learning rate
    1e-3. Its LSTM has 512 units, no input or recurrent dropout, and a dense
    layer of 512 with dropout 0.5 before the ReLU (the same function: the
    dropout multipliers are non-negative). That configuration trains with::

        losscorrection run imdb_lstm --lr 0.001 --model-option embedding_dim=512 \
            --model-option spatial_dropout=0.8 --model-option gate_activation=hard_sigmoid \
            --model-option output_init=he_normal

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
        spatial_dropout: float = 0.0,
        gate_activation: str = "sigmoid",
        output_init: str = "uniform",
    ) -> None:
        super().__init__()
        if gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(f"unknown gate_activation {gate_activation!r}; known: {', '.join(GATE_ACTIVATIONS)}")
        self.gate_activation = gate_activation
        self.dropout = _check_rate(dropout, "dropout")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.spatial_dropout = SpatialDropout1d(spatial_dropout)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.dense = _init_linear(nn.Linear(hidden_size, dense), relu_follows=True)
        self.output = _init_output(nn.Linear(dense, num_classes), output_init)
        self.head = output_head(num_classes) if bn_head else None
        _uniform(self.embedding.weight)
        _uniform(self.lstm.weight_ih_l0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        with torch.no_grad():  # PyTorch gate order: input, forget, cell, output
            self.lstm.bias_ih_l0[hidden_size : 2 * hidden_size] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        embedded = self.spatial_dropout(self.embedding(x))
        if self.gate_activation == "sigmoid":
            states, _ = self.lstm(embedded)
        else:
            states = lstm_states(embedded, self.lstm, hard_sigmoid)
        h = F.dropout(torch.relu(self.dense(states[:, -1])), self.dropout, self.training)
        return _apply_head(self.head, self.output(h))
