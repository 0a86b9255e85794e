"""The architectures of the paper's experiments (Patrini et al., CVPR 2017, §5).

=====================  =========================================  ==================
name                   model                                      paper
=====================  =========================================  ==================
``mlp``                :class:`MLP`, 2 x 128 ReLU + dropout        §5.1, MNIST
``imdb_embedding``     :class:`EmbeddingClassifier`                §5.1, IMDB
``imdb_lstm``          :class:`LSTMClassifier`                     §5.1, IMDB
``resnet<6n+2>``       :class:`PreActResNet` (14, 32, 44, ...)     §5.1, CIFAR-10/100
``resnet50``           :func:`resnet50` (torchvision ResNet-50)    §5.3, Clothing1M
=====================  =========================================  ==================

Every model returns logits ``(n, num_classes)`` (the losses of
:mod:`losscorrection.losses` take logits). With ``bn_head=True`` the logits
pass through :func:`output_head`, a batch normalisation without learned scale
or shift, which §5.2 puts "right before the loss function" for the unhinged
and sigmoid losses; every model exposes it as ``.head`` (``None`` without it).

Initialisation follows §5 and the authors' Keras setup: a layer followed by a
ReLU (possibly through batch normalisation) is He normal, an untruncated
normal with std ``sqrt(2 / fan_in)`` (Keras 1 ``he_normal``; ``fan_in`` =
inputs of a dense layer, ``k*k*in_channels`` of a convolution); every other
dense layer and every embedding is uniform in ``[-0.05, 0.05]``; biases are
zero (the LSTM's forget gate excepted). All random draws come from torch's
global generator, so ``torch.manual_seed(s)`` followed by a constructor gives
the same parameters every time. The constructors' defaults follow the text;
the authors' released Keras code is one argument away: ``dropout=0.2`` for
the MNIST network, ``output_init="he_normal"`` for the output layers of the
MNIST and IMDB networks, the LSTM's ``embedding_dim``, ``spatial_dropout``
and ``gate_activation`` options, and ``architecture="released"`` for the
ResNet (whose He normal is Keras 2's, truncated at two standard
deviations). The experiments of :mod:`losscorrection.training` choose
between the two (the book's reproduction notes say which and why).

Modules:

- :mod:`~losscorrection.models.layers`: the output head, initialisers,
  :class:`SpatialDropout1d` and the dropout-rate check;
- :mod:`~losscorrection.models.mlp`: :class:`MLP` (MNIST);
- :mod:`~losscorrection.models.text`: :class:`EmbeddingClassifier` and
  :class:`LSTMClassifier` (IMDB);
- :mod:`~losscorrection.models.resnet`: :class:`PreActBlock`,
  :class:`PreActResNet` (CIFAR), :class:`ResNet50` and :func:`resnet50`
  (Clothing1M);
- :mod:`~losscorrection.models.registry`: :data:`MODEL_NAMES` and
  :func:`build_model`.
"""

from . import native
from .layers import UNIFORM_SCALE, SpatialDropout1d, kernels, output_head
from .mlp import MLP
from .registry import MODEL_NAMES, build_model
from .resnet import RESNET50_IMAGENET_URL, PreActBlock, PreActResNet, ResNet50, resnet50
from .text import EmbeddingClassifier, LSTMClassifier

__all__ = [
    "MODEL_NAMES",
    "EmbeddingClassifier",
    "LSTMClassifier",
    "MLP",
    "PreActBlock",
    "PreActResNet",
    "ResNet50",
    "SpatialDropout1d",
    "build_model",
    "kernels",
    "output_head",
    "resnet50",
]
