"""The architectures of §5: sizes, forward structure, dropout, init, heads."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from losscorrection import models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tokens(n: int, length: int, vocab: int = 5000, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


def preact_resnet_params(depth: int, num_classes: int) -> int:
    """Parameters of the pre-activation CIFAR ResNet counted layer by layer."""
    n = (depth - 2) // 6

    def conv(k, cin, cout):
        return k * k * cin * cout

    def bn(ch):
        return 2 * ch  # weight and bias

    def block(cin, cout):
        projection = conv(1, cin, cout) if cin != cout else 0
        return bn(cin) + conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + projection

    total = conv(3, 3, 16)
    cin = 16
    for cout in (16, 32, 64):
        for _ in range(n):
            total += block(cin, cout)
            cin = cout
    return total + bn(64) + 64 * num_classes + num_classes


# -------------------------------------------------------------- sizes and shapes


def test_mlp_parameter_count():
    model = models.build_model("mlp", 10, input_dim=784)
    assert n_params(model) == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10 == 118_282
    assert [tuple(layer.weight.shape) for layer in model.linear_layers()] == [(128, 784), (128, 128), (10, 128)]


def test_embedding_parameter_count():
    model = models.build_model("imdb_embedding", 2, input_dim=400)
    assert n_params(model) == 5000 * 50 + 400 * 50 * 2 + 2


def test_lstm_parameter_count():
    model = models.build_model("imdb_lstm", 2)
    lstm = 4 * (256 * 512 + 512 * 512 + 2 * 512)  # torch keeps two bias vectors
    assert n_params(model) == 5000 * 256 + lstm + 512 * 512 + 512 + 512 * 2 + 2 == 3_120_642


@pytest.mark.parametrize("depth, classes", [(14, 10), (32, 10), (44, 100), (20, 10)])
def test_preact_resnet_parameter_count(depth, classes):
    n = (depth - 2) // 6
    model = models.build_model(f"resnet{depth}", classes)
    assert n_params(model) == preact_resnet_params(depth, classes)
    # closed form of the same count, derived by hand: 97,216 per block triple
    assert n_params(model) == 97_216 * n - 20_016 + 65 * classes


def test_resnet_sizes_match_published_values():
    """He et al. report 0.27M (ResNet-20), 0.46M (ResNet-32), 0.66M (ResNet-44)
    parameters for CIFAR-10; our 1x1 projections add a few thousand."""
    for depth, published in [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6)]:
        count = n_params(models.PreActResNet(depth, 10))
        assert published <= count <= published * 1.02, (depth, count)


def test_output_shapes():
    torch.manual_seed(0)
    cases = [
        (models.build_model("mlp", 10, input_dim=784), torch.rand(3, 784), 10),
        (models.build_model("mlp", 7, input_dim=64), torch.rand(3, 1, 8, 8), 7),  # flattened
        (models.build_model("imdb_embedding", 2, input_dim=400), tokens(3, 400), 2),
        (models.build_model("imdb_lstm", 2, embedding_dim=16, hidden_size=8, dense=8), tokens(3, 30), 2),
        (models.build_model("resnet14", 10), torch.randn(3, 3, 32, 32), 10),
        (models.build_model("resnet8", 100, bn_head=True), torch.randn(3, 3, 32, 32), 100),
    ]
    for model, x, classes in cases:
        for train in (True, False):
            with torch.no_grad():
                assert model.train(train)(x).shape == (3, classes)


def test_resnet_stage_shapes():
    """16/32/64 channels at 32/16/8 pixels, n blocks per stage, projections at stride 2."""
    model = models.PreActResNet(20, 10).eval()
    shapes = {}
    for name in ("stem", "stage1", "stage2", "stage3"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    model(torch.randn(2, 3, 32, 32))
    assert shapes == {
        "stem": (2, 16, 32, 32), "stage1": (2, 16, 32, 32),
        "stage2": (2, 32, 16, 16), "stage3": (2, 64, 8, 8),
    }
    for stage in (model.stage1, model.stage2, model.stage3):
        assert len(stage) == 3
    projections = [b.shortcut for s in (model.stage1, model.stage2, model.stage3) for b in s]
    assert [p is not None for p in projections] == [False] * 3 + [True, False, False] * 2
    assert model.stage2[0].shortcut.stride == (2, 2) and model.stage2[0].shortcut.kernel_size == (1, 1)
    assert model.stage2[0].conv1.stride == (2, 2)


def test_preact_block_forward_structure():
    """BN-ReLU-conv-BN-ReLU-conv, shortcut = projection of the pre-activated input."""
    torch.manual_seed(0)
    model = models.PreActResNet(14, 10)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    model.eval()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        h = model.stage1(model.stem(x))
        block = model.stage2[0]
        a = torch.relu(block.bn1(h))
        expected = block.conv2(torch.relu(block.bn2(block.conv1(a)))) + block.shortcut(a)
        torch.testing.assert_close(block(h), expected)
        second = model.stage2[1]
        b = expected
        manual = second.conv2(torch.relu(second.bn2(second.conv1(torch.relu(second.bn1(b)))))) + b
        torch.testing.assert_close(second(b), manual)
        features = model.stage3(model.stage2(h))
        logits = model.fc(torch.relu(model.bn(features)).mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), logits)


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match="6n\\+2"):
        models.PreActResNet(16)
    with pytest.raises(ValueError, match="6n\\+2"):
        models.build_model("resnet18", 10)
    with pytest.raises(ValueError, match="6n\\+2"):
        models.PreActResNet(2)
    with pytest.raises(ValueError) as err:
        models.build_model("vgg16", 10)
    for name in models.MODEL_NAMES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="input_dim"):
        models.build_model("mlp", 10)
    with pytest.raises(ValueError, match="dropout"):
        models.build_model("resnet14", 10, dropout=0.5)
    with pytest.raises(ValueError):
        models.MLP(dropout=1.0)


def test_build_model_dropout_and_kwargs():
    assert models.build_model("mlp", 10, input_dim=784).dropout == 0.5  # the paper's value
    assert models.build_model("mlp", 10, input_dim=784, dropout=0.2).dropout == 0.2  # released code
    assert models.build_model("imdb_embedding", 2, input_dim=400).spatial_dropout.p == 0.8
    assert models.build_model("imdb_embedding", 2, input_dim=400, dropout=0.3).spatial_dropout.p == 0.3
    assert models.build_model("imdb_lstm", 2).dropout == 0.5
    assert models.build_model("imdb_lstm", 2, dropout=0.1).dropout == 0.1
    mlp = models.build_model("mlp", 3, input_dim=20, hidden=(7,))
    assert [tuple(layer.weight.shape) for layer in mlp.linear_layers()] == [(7, 20), (3, 7)]
    assert isinstance(models.build_model("resnet32", 10), models.PreActResNet)
    assert models.build_model("imdb_embedding", 2, input_dim=50).output.in_features == 50 * 50
    for name in models.MODEL_NAMES:
        if name != "resnet50":
            model = models.build_model(name, 3, input_dim=400 if "imdb" in name else 784)
            assert model.head is None


# ------------------------------------------------------------------------- MLP


def test_mlp_eval_forward_is_relu_linear_chain():
    torch.manual_seed(1)
    model = models.MLP(50, 4, hidden=(30, 20)).eval()
    x = torch.randn(16, 50)
    h = x
    layers = model.linear_layers()
    for layer in layers[:-1]:
        h = torch.relu(h @ layer.weight.t() + layer.bias)
    expected = h @ layers[-1].weight.t() + layers[-1].bias
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_mlp_dropout_zeroes_hidden_units_and_rescales(p):
    """Hidden layer set to output 1 everywhere, identity output layer: the logits
    are the dropped-out hidden units themselves."""
    torch.manual_seed(2)
    width = 400
    model = models.MLP(5, width, hidden=(width,), dropout=p)
    with torch.no_grad():
        model.hidden[0].weight.zero_()
        model.hidden[0].bias.fill_(1.0)
        model.output.weight.copy_(torch.eye(width))
        model.output.bias.zero_()
    out = model.train()(torch.randn(200, 5))
    zero = out == 0
    assert abs(zero.float().mean().item() - p) < 0.01
    torch.testing.assert_close(out[~zero], torch.full_like(out[~zero], 1 / (1 - p)))
    torch.testing.assert_close(model.eval()(torch.randn(3, 5)), torch.ones(3, width))


def test_mlp_dropout_follows_every_hidden_layer():
    torch.manual_seed(3)
    model = models.MLP(5, 300, hidden=(10, 300), dropout=0.5)
    with torch.no_grad():  # second hidden layer outputs 1 whatever the first one does
        model.hidden[1].weight.zero_()
        model.hidden[1].bias.fill_(1.0)
        model.output.weight.copy_(torch.eye(300))
        model.output.bias.zero_()
    out = model.train()(torch.randn(100, 5))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert abs((out == 0).float().mean().item() - 0.5) < 0.02


# ------------------------------------------------------------------------ IMDB


def test_spatial_dropout_drops_whole_embedding_dimensions():
    torch.manual_seed(4)
    dropout = models.SpatialDropout1d(0.8).train()
    emb = torch.rand(40, 60, 50) + 0.1
    torch.manual_seed(5)
    out = dropout(emb)
    assert out.shape == (40, 60, 50)
    kept = out != 0  # (review, position, dimension)
    per_dim = kept.all(dim=1)
    assert bool((per_dim | ~kept.any(dim=1)).all()), "a dimension is dropped at some positions only"
    torch.testing.assert_close(out[kept], emb[kept] / (1 - 0.8))
    assert abs(per_dim.float().mean().item() - 0.2) < 0.03
    masks = per_dim.float()
    assert not bool((masks == masks[0]).all()), "each review draws its own mask"
    torch.manual_seed(5)
    keep = dropout.keep_mask(40, 50, emb)
    torch.testing.assert_close(keep, per_dim.float() / (1 - 0.8))
    assert dropout.eval().keep_mask(40, 50, emb) is None


def _embedding_model_by_composition(model, x):
    """The §5.1 embedding model written layer by layer, as in the released code."""
    h = torch.relu(model.spatial_dropout(model.embedding(x)))
    return model.output(h.flatten(1))


def _require_kernel():
    from losscorrection.models import native
    if native.kernel() is None:
        pytest.skip(native.status())


@pytest.mark.parametrize("native_kernel", [True, False], ids=["compiled", "pytorch"])
@pytest.mark.parametrize("train", [True, False])
def test_fused_embedding_model_matches_the_layer_by_layer_model(train, native_kernel):
    if native_kernel:
        _require_kernel()
    torch.manual_seed(7)
    model = models.EmbeddingClassifier(vocab_size=100, length=30, embedding_dim=8).train(train)
    model.native_kernel = native_kernel
    with torch.no_grad():  # negative entries, so that the ReLU matters
        model.embedding.weight.normal_()
    x = tokens(70, 30, vocab=100)
    lead = torch.randint(0, 31, (70,), generator=torch.Generator().manual_seed(1))
    lead[:3] = torch.tensor([0, 30, 29])  # no padding, all padding, one token
    x[torch.arange(30) < lead[:, None]] = 0  # Keras' front padding, id 0
    x[5, 20] = 0  # the padding id inside a review
    y = torch.randint(0, 2, (70,))
    grads = []
    for forward in (model, lambda ids: _embedding_model_by_composition(model, ids)):
        model.zero_grad()
        torch.manual_seed(8)  # the same dropout masks
        logits = forward(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append([logits.detach()] + [p.grad.clone() for p in model.parameters()])
    for fused, plain in zip(*grads):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding_id", [0, None])
def test_fused_embedding_model_gives_the_same_numbers_in_any_chunks(monkeypatch, padding_id):
    from losscorrection.models import gathered
    torch.manual_seed(9)
    model = models.EmbeddingClassifier(vocab_size=50, length=12, embedding_dim=4, padding_id=padding_id)
    model.native_kernel = False  # the chunks are the PyTorch formulation's
    x = tokens(23, 12, vocab=50)
    x[torch.arange(12) < torch.arange(23)[:, None] % 13] = 0
    results = []
    for chunk in (32, 5, 1):
        monkeypatch.setattr(gathered, "CHUNK", chunk)
        model.zero_grad()
        model.eval()(x).sum().backward()
        results.append([model(x).detach()] + [p.grad.clone() for p in model.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b)
    torch.testing.assert_close(results[0][0], _embedding_model_by_composition(model, x).detach())


def test_gathered_linear_names_a_bad_shape():
    from losscorrection.models.gathered import gathered_linear
    ids, table, weight = tokens(4, 6, vocab=10), torch.rand(10, 3), torch.rand(2, 18)
    with pytest.raises(ValueError, match="weight"):
        gathered_linear(ids, table, None, torch.rand(2, 17))
    with pytest.raises(ValueError, match="keep"):
        gathered_linear(ids, table, torch.rand(4, 2), weight)


@pytest.mark.parametrize("padding_id", [0, None])
@pytest.mark.parametrize("with_keep", [True, False])
def test_compiled_kernel_equals_the_pytorch_formulation(padding_id, with_keep):
    from losscorrection.models.gathered import gathered_linear
    _require_kernel()
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(1, 40, (37, 25), generator=gen)
    ids[torch.arange(25) < torch.randint(0, 26, (37, 1), generator=gen)] = 0
    table = torch.randn(40, 6, generator=gen).requires_grad_()
    weight = torch.randn(3, 25 * 6, generator=gen).requires_grad_()
    keep = (torch.rand(37, 6, generator=gen) < 0.3) / 0.3 if with_keep else None
    grad = torch.randn(37, 3, generator=gen)
    results = []
    for native_kernel, id_type in ((True, torch.int32), (False, torch.int64)):
        logits = gathered_linear(ids.to(id_type), table, keep, weight, padding_id, native_kernel=native_kernel)
        results.append([logits, *torch.autograd.grad(logits, (table, weight), grad)])
    for compiled, pytorch in zip(*results):
        torch.testing.assert_close(compiled, pytorch, rtol=1e-5, atol=1e-5)


def test_compiled_kernel_names_a_token_id_out_of_range():
    from losscorrection.models.gathered import gathered_linear
    _require_kernel()
    ids = tokens(4, 6, vocab=10)
    ids[2, 3] = 10
    with pytest.raises(ValueError, match=r"\[0, 10\); review 2 holds 10 at position 3"):
        gathered_linear(ids, torch.rand(10, 3), None, torch.rand(2, 18))


def test_native_kernel_can_be_switched_off(monkeypatch):
    from losscorrection.models import native
    monkeypatch.setenv(native.DISABLE_ENV, "0")
    native._load.cache_clear()
    try:
        assert native.kernel() is None and "LOSSCORR_NATIVE=0" in native.status()
    finally:
        native._load.cache_clear()


def test_embedding_model_eval_is_deterministic_and_manual():
    torch.manual_seed(5)
    model = models.EmbeddingClassifier(vocab_size=100, length=20, embedding_dim=8).eval()
    x = tokens(6, 20, vocab=100)
    expected = model.output(torch.relu(model.embedding(x)).flatten(1))
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model(x), model(x))
    with pytest.raises(ValueError, match="20"):
        model(tokens(6, 21, vocab=100))


def test_lstm_uses_the_last_time_step():
    torch.manual_seed(6)
    model = models.LSTMClassifier(vocab_size=300, embedding_dim=24, hidden_size=16, dense=12).eval()
    x = tokens(5, 40, vocab=300)
    with torch.no_grad():
        states, _ = model.lstm(model.embedding(x))
        expected = model.output(torch.relu(model.dense(states[:, -1])))
        torch.testing.assert_close(model(x), expected)
        first_step = model.output(torch.relu(model.dense(states[:, 0])))
        assert not torch.allclose(model(x), first_step)
        # front padding (Keras pad_sequences) leaves the end of the review at the last step
        padded = torch.cat([torch.zeros(5, 10, dtype=torch.long), x], dim=1)
        states, _ = model.lstm(model.embedding(padded))
        torch.testing.assert_close(model(padded), model.output(torch.relu(model.dense(states[:, -1]))))


def test_lstm_any_sequence_length():
    torch.manual_seed(7)
    model = models.build_model("imdb_lstm", 2).eval()
    with torch.no_grad():
        for length in (1, 5, 37):
            assert model(tokens(2, length)).shape == (2, 2)
        # each example depends on its own sequence only
        x = tokens(4, 5)
        torch.testing.assert_close(model(x)[:2], model(x[:2]), rtol=1e-4, atol=1e-5)


def test_lstm_dense_dropout_in_training():
    torch.manual_seed(8)
    model = models.LSTMClassifier(vocab_size=50, embedding_dim=8, hidden_size=8, dense=400, num_classes=400)
    with torch.no_grad():
        model.dense.weight.zero_()
        model.dense.bias.fill_(1.0)
        model.output.weight.copy_(torch.eye(400))
        model.output.bias.zero_()
    out = model.train()(tokens(50, 3, vocab=50))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert abs((out == 0).float().mean().item() - 0.5) < 0.02


# ---------------------------------------------------------------- initialisation


def assert_he_normal(weight: torch.Tensor, fan_in: int) -> None:
    std = weight.std().item()
    assert abs(std / math.sqrt(2 / fan_in) - 1) < 0.03, (std, math.sqrt(2 / fan_in))
    assert abs(weight.mean().item()) < 0.1 * std
    assert weight.abs().max().item() > 3 * std  # a normal, not a uniform


def assert_uniform_005(weight: torch.Tensor, tolerance: float = 0.03) -> None:
    assert weight.abs().max().item() <= 0.05
    assert weight.abs().max().item() > 0.049
    assert abs(weight.std().item() / (0.05 / math.sqrt(3)) - 1) < tolerance


def test_he_and_uniform_initialisation():
    torch.manual_seed(9)
    mlp = models.MLP(784, 10, hidden=(512, 256))
    assert_he_normal(mlp.hidden[0].weight, 784)
    assert_he_normal(mlp.hidden[1].weight, 512)
    assert_uniform_005(mlp.output.weight)
    for layer in mlp.linear_layers():
        assert bool((layer.bias == 0).all())

    emb = models.EmbeddingClassifier()
    assert_uniform_005(emb.embedding.weight)
    assert_uniform_005(emb.output.weight)
    assert bool((emb.output.bias == 0).all())
    released = models.EmbeddingClassifier(output_init="he_normal")  # the released code's output layer
    assert_he_normal(released.output.weight, 400 * 50)
    with pytest.raises(ValueError, match="output_init"):
        models.EmbeddingClassifier(output_init="glorot")

    lstm = models.LSTMClassifier()
    assert_uniform_005(lstm.embedding.weight)
    assert_uniform_005(lstm.lstm.weight_ih_l0)
    w_hh = lstm.lstm.weight_hh_l0  # (4 * 512, 512), orthonormal columns
    torch.testing.assert_close(w_hh.t() @ w_hh, torch.eye(512), atol=1e-4, rtol=0)
    forget = torch.zeros(4 * 512)
    forget[512:1024] = 1.0
    torch.testing.assert_close(lstm.lstm.bias_ih_l0 + lstm.lstm.bias_hh_l0, forget)
    assert_he_normal(lstm.dense.weight, 512)
    assert_uniform_005(lstm.output.weight)

    resnet = models.PreActResNet(14, 10)
    assert_he_normal(resnet.stage3[1].conv1.weight, 9 * 64)
    assert_he_normal(resnet.stage3[0].conv1.weight, 9 * 32)
    shortcut = resnet.stage3[0].shortcut.weight  # 2048 weights only: looser
    assert abs(shortcut.std().item() / math.sqrt(2 / 32) - 1) < 0.1
    for bn in (m for m in resnet.modules() if isinstance(m, nn.BatchNorm2d)):
        assert bool((bn.weight == 1).all()) and bool((bn.bias == 0).all())
    assert_uniform_005(resnet.fc.weight, tolerance=0.1)  # 640 weights
    assert bool((resnet.fc.bias == 0).all())


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("mlp", {"input_dim": 64}),
        ("imdb_embedding", {"input_dim": 30, "vocab_size": 100}),
        ("imdb_lstm", {"vocab_size": 100, "embedding_dim": 16, "hidden_size": 8, "dense": 8}),
        ("resnet14", {}),
    ],
)
def test_construction_is_deterministic_given_the_seed(name, kwargs):
    def build(seed):
        torch.manual_seed(seed)
        return models.build_model(name, 5, **kwargs).state_dict()

    first, again, other = build(3), build(3), build(4)
    assert first.keys() == again.keys()
    for key in first:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


# ---------------------------------------------------------------------- BN head


@pytest.mark.parametrize(
    "name, kwargs, x",
    [
        ("mlp", {"input_dim": 20}, torch.randn(64, 20)),
        ("imdb_embedding", {"input_dim": 12, "vocab_size": 50}, tokens(64, 12, vocab=50)),
        ("imdb_lstm", {"vocab_size": 50, "embedding_dim": 8, "hidden_size": 8, "dense": 8}, tokens(64, 6, vocab=50)),
        ("resnet8", {}, torch.randn(16, 3, 16, 16)),
    ],
)
def test_bn_head_whitens_training_outputs(name, kwargs, x):
    torch.manual_seed(10)
    model = models.build_model(name, 3, bn_head=True, **kwargs).train()
    assert isinstance(model.head, nn.BatchNorm1d)
    assert model.head.affine and model.head.num_features == 3
    with torch.no_grad():  # logits far from constant, so that eps plays no part
        [m for m in model.modules() if isinstance(m, nn.Linear)][-1].weight.mul_(1e5)
        model.head.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))  # a learned scale and shift
        model.head.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    out = model(x)
    torch.testing.assert_close(out.mean(dim=0), model.head.bias.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=0, unbiased=False), model.head.weight.detach(), atol=1e-2, rtol=0)
    # eval mode uses the running statistics: logits minus running mean, over running std, scaled and shifted
    model.eval()
    with torch.no_grad():
        head, model.head = model.head, None
        raw = model(x)
        model.head = head
        expected = (raw - head.running_mean) / torch.sqrt(head.running_var + head.eps) * head.weight + head.bias
        torch.testing.assert_close(model(x), expected)


def test_output_head_is_keras_batch_normalisation():
    head = models.output_head(7)
    assert isinstance(head, nn.BatchNorm1d)
    assert head.num_features == 7 and head.affine and n_params(head) == 14
    assert (head.eps, head.momentum) == (1e-3, 0.01)  # Keras: epsilon 1e-3, momentum 0.99
    whitening = models.output_head(7, affine=False)
    assert not whitening.affine and n_params(whitening) == 0


# ------------------------------------------------------------- channels last


def test_preact_resnet_channels_last():
    torch.manual_seed(11)
    model = models.PreActResNet(14, 10)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    model(x)  # move the running statistics away from their initial values
    model.eval()
    with torch.no_grad():
        reference = model(x)
        fast = model.to(memory_format=torch.channels_last)
        out = fast(x.contiguous(memory_format=torch.channels_last))
    assert fast.stem.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    loss = fast.train()(x.contiguous(memory_format=torch.channels_last)).square().mean()
    loss.backward()
    assert fast.stem.weight.grad is not None


# ------------------------------------------------------ the released ResNet


def released_resnet_layers(depth: int, num_classes: int) -> list[tuple]:
    """The layers of the released Keras network (``resnet.cifar10_resnet`` with
    ``depth = (depth - 2) / 6``), in its order: ``("conv", k, in, out, stride)``,
    ``("bn", channels)``, ``("dense", in, out)``. Every Keras ``Conv2D`` and
    ``Dense`` there has a bias; a projection follows a block whose channels change."""
    n = (depth - 2) // 6
    layers = [("conv", 3, 3, 16, 1), ("bn", 16)]
    channels = 16

    def residual(filters, stride, first):
        nonlocal channels
        layers.extend([] if first else [("bn", channels)])
        layers.extend([("conv", 3, channels, filters, stride), ("bn", filters), ("conv", 3, filters, filters, 1)])
        if channels != filters:
            layers.append(("conv", 1, channels, filters, stride))
        channels = filters

    for filters, more in ((16, False), (32, True), (64, True)):
        residual(filters, 2 if more else 1, first=not more)
        for _ in range(1, n):
            residual(filters, 1, first=False)
    return layers + [("bn", 64), ("dense", 64, num_classes)]


def keras_trainable_params(layers: list[tuple]) -> int:
    """What Keras' ``model.summary()`` calls trainable: kernels and biases, gamma and beta."""
    count = {"conv": lambda k, cin, cout, stride: k * k * cin * cout + cout,
             "bn": lambda ch: 2 * ch,
             "dense": lambda cin, cout: cin * cout + cout}
    return sum(count[kind](*sizes) for kind, *sizes in layers)


def truncated_normal_std(bound: float) -> float:
    """Std of a standard normal truncated to ``[-bound, bound]``: ``1 - 2 b phi(b) / (2 Phi(b) - 1)``."""
    density = math.exp(-bound**2 / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return math.sqrt(1 - 2 * bound * density / mass)


def released(depth: int = 14, num_classes: int = 10, **kwargs) -> models.PreActResNet:
    return models.PreActResNet(depth, num_classes, architecture="released", **kwargs)


@pytest.mark.parametrize("depth, classes", [(14, 10), (32, 10), (44, 100), (8, 3)])
def test_released_resnet_parameter_count_is_the_keras_layer_list(depth, classes):
    model = models.build_model(f"resnet{depth}", classes, architecture="released")
    layers = released_resnet_layers(depth, classes)
    assert n_params(model) == keras_trainable_params(layers)
    running = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert running == sum(2 * sizes[0] for kind, *sizes in layers if kind == "bn")  # Keras: non-trainable
    if (depth, classes) == (14, 10):
        # by hand: stem 448 + 32; stage 1 4,672 + 4,704; stage 2 14,528 + 18,624;
        # stage 3 57,728 + 74,112; final batch norm 128; dense 650
        assert n_params(model) == 175_626 and running == 928
        assert n_params(models.build_model("resnet14", 10)) == 175_066  # the default: 560 biases fewer


def test_released_resnet_layers_biases_and_batch_norms():
    model = released(14)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    layers = released_resnet_layers(14, 10)
    assert [(m.kernel_size[0], m.in_channels, m.out_channels, m.stride[0]) for m in convs] == [
        tuple(sizes) for kind, *sizes in layers if kind == "conv"]  # the Keras order, stem first
    assert all(m.bias is not None and bool((m.bias == 0).all()) for m in convs)
    assert bool((model.fc.bias == 0).all())
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.num_features for m in norms] == [sizes[0] for kind, *sizes in layers if kind == "bn"]
    assert all((m.eps, m.momentum) == (1e-3, 0.01) for m in norms)  # Keras: epsilon 1e-3, momentum 0.99
    assert all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in norms)
    assert model.stage1[0].bn1 is None and model.stage1[1].bn1 is not None
    default = models.PreActResNet(14, 10)
    assert all(m.bias is None for m in default.modules() if isinstance(m, nn.Conv2d))
    assert all((m.eps, m.momentum) == (1e-5, 0.1) for m in default.modules() if isinstance(m, nn.BatchNorm2d))
    assert default.stem_bn is None and default.stage1[0].bn1 is not None


def test_released_resnet_kernels_are_the_weights_of_convolutions_and_dense_layer():
    """The L2 penalty's parameters: every kernel, no bias, no batch-norm parameter."""
    model = released(14)
    kernels = models.kernels(model)
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert {id(k) for k in kernels} == weights and len(kernels) == len(weights) == 16
    named = {id(p): name for name, p in model.named_parameters()}
    assert all(named[id(k)].endswith(".weight") and "bn" not in named[id(k)] for k in kernels)
    biases = 560 + 10
    assert sum(k.numel() for k in kernels) == 175_626 - biases - 928


def test_tensorflow_same_padding():
    # TensorFlow's documented example: width 13, filter 6, stride 5 pads 1 left and 2 right
    assert models.resnet.tensorflow_same_padding(13, 6, 5) == (1, 2)
    assert models.resnet.tensorflow_same_padding(32, 3, 2) == (0, 1)
    assert models.resnet.tensorflow_same_padding(15, 3, 2) == (1, 1)
    assert models.resnet.tensorflow_same_padding(32, 3, 1) == (1, 1)
    assert models.resnet.tensorflow_same_padding(32, 1, 2) == (0, 0)
    for size in range(1, 40):
        for kernel, stride in ((3, 1), (3, 2), (1, 2), (5, 3)):
            before, after = models.resnet.tensorflow_same_padding(size, kernel, stride)
            assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)
            assert after - before in (0, 1)


def randomise_batch_norms(model: nn.Module) -> None:
    """Scales, shifts, running statistics and convolution biases away from their init."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.2, 0.2)


def keras_reference_forward(model: models.PreActResNet, x: torch.Tensor, train: bool) -> torch.Tensor:
    """The released code's forward pass written out with functional operations and
    the model's parameters: Keras' epsilon 1e-3 and momentum 0.99, TensorFlow's SAME
    padding (0 before, 1 after) for the strided 3x3 convolutions of an even-sized
    input, projections of the raw block input. Updates copies of the running statistics."""
    def bn(layer, h):
        mean, var = layer.running_mean.clone(), layer.running_var.clone()
        return F.batch_norm(h, mean, var, layer.weight, layer.bias, train, 0.01, 1e-3)

    def conv(layer, h, stride=1):
        if stride == 2:
            return F.conv2d(F.pad(h, (0, 1, 0, 1)), layer.weight, layer.bias, stride=2)
        return F.conv2d(h, layer.weight, layer.bias, padding=layer.kernel_size[0] // 2)

    h = torch.relu(bn(model.stem_bn, conv(model.stem, x)))
    for stage, first_stride in ((model.stage1, 1), (model.stage2, 2), (model.stage3, 2)):
        for j, block in enumerate(stage):
            stride = first_stride if j == 0 else 1
            a = h if block.bn1 is None else torch.relu(bn(block.bn1, h))
            r = conv(block.conv2, torch.relu(bn(block.bn2, conv(block.conv1, a, stride))))
            h = r + (h if block.shortcut is None else F.conv2d(h, block.shortcut.weight, block.shortcut.bias,
                                                                stride=stride))
    pooled = F.avg_pool2d(torch.relu(bn(model.bn, h)), 8).flatten(1)  # Keras: 8x8 average pooling
    return F.linear(pooled, model.fc.weight, model.fc.bias)


@pytest.mark.parametrize("train", [False, True])
def test_released_resnet_forward_is_the_keras_network(train):
    """Stem conv-BN-ReLU, first block without pre-activation, raw-input projections,
    SAME padding, Keras batch norm: the whole forward pass, by hand."""
    torch.manual_seed(12)
    model = released(14)
    randomise_batch_norms(model)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        expected = keras_reference_forward(model, x, train)
        torch.testing.assert_close(model.train(train)(x), expected, rtol=1e-4, atol=1e-5)
        # the network differs from the default layout in each of these ways
        block = model.stage2[0]
        a = torch.relu(block.bn1(torch.randn(2, 16, 32, 32)))
        symmetric = F.conv2d(a, block.conv1.weight, block.conv1.bias, stride=2, padding=1)
        assert not torch.allclose(block.conv1(F.pad(a, (0, 1, 0, 1))), symmetric)


def test_released_resnet_stem_order():
    """Hooks record the layers run first: conv, BN, ReLU, then the first block's conv
    (no pre-activation); and what the stride-2 projection reads."""
    model = released(8).train()
    order = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            m.register_forward_hook(lambda module, args, out, name=name: order.append(name))
    stem_out = []
    model.stem_bn.register_forward_hook(lambda module, args, out: stem_out.append(out))
    block_in = []
    model.stage1[0].register_forward_pre_hook(lambda module, args: block_in.append(args[0]))
    projected = []
    model.stage2[0].register_forward_pre_hook(lambda module, args: block_in.append(args[0]))
    model.stage2[0].shortcut.register_forward_pre_hook(lambda module, args: projected.append(args[0]))
    model(torch.randn(4, 3, 32, 32))
    assert order[:5] == ["stem", "stem_bn", "stage1.0.conv1", "stage1.0.bn2", "stage1.0.conv2"]
    torch.testing.assert_close(block_in[0], torch.relu(stem_out[0]))  # ReLU between stem BN and block
    assert projected[0] is block_in[1]  # the projection reads the raw block input, not ReLU(BN(x))


def test_released_batch_norm_running_statistics_after_one_step():
    """Keras' moving averages, ``0.99 * old + 0.01 * batch`` (PyTorch's momentum 0.01),
    and normalisation with eps 1e-3, seen on the stem's batch norm."""
    torch.manual_seed(13)
    model = released(8).train()
    seen = []
    model.stem_bn.register_forward_hook(lambda module, args, out: seen.append((args[0].detach(), out.detach())))
    model(torch.randn(8, 3, 16, 16) * 3)
    h, _ = seen[-1]
    mean, var = h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), unbiased=False)
    n = h.numel() // h.shape[1]
    assert var.min().item() > 1  # far from the initial running statistics (0 and 1)
    torch.testing.assert_close(model.stem_bn.running_mean, 0.01 * mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model.stem_bn.running_var, 0.99 + 0.01 * var * n / (n - 1), rtol=1e-4, atol=1e-6)
    model(torch.randn(8, 3, 16, 16) * 0.02)  # variances near 1e-3, where epsilon shows
    h, out = seen[-1]
    mean, var = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    keras = (h - mean) / torch.sqrt(var + 1e-3)
    torch.testing.assert_close(out, keras, rtol=1e-4, atol=1e-5)
    assert (keras - (h - mean) / torch.sqrt(var + 1e-5)).abs().max().item() > 0.1


def test_keras2_he_normal_is_a_truncated_normal():
    """Keras 2 ``he_normal``: std ``sqrt(2 / fan_in)`` before truncation at two of them,
    so an empirical std of 0.8796 ``sqrt(2 / fan_in)``."""
    torch.manual_seed(14)
    ratio = truncated_normal_std(2.0)
    assert abs(ratio - 0.8796) < 1e-4
    weight = torch.empty(1024, 4096)
    models.layers._keras2_he_normal(weight)
    scale = math.sqrt(2 / 4096)
    assert abs(weight.std().item() / (ratio * scale) - 1) < 0.005
    assert weight.abs().max().item() <= 2 * scale and weight.abs().max().item() > 1.99 * scale
    assert abs(weight.mean().item()) < 0.01 * scale
    model = released(8, 20_000)  # a large output layer: fan_in 64, 1.28 million weights
    scale = math.sqrt(2 / 64)
    assert abs(model.fc.weight.std().item() / (ratio * scale) - 1) < 0.005
    assert model.fc.weight.abs().max().item() <= 2 * scale
    assert bool((model.fc.bias == 0).all())
    conv = model.stage3[0].conv2.weight  # 36,864 weights, fan_in 9 * 64
    assert abs(conv.std().item() / (ratio * math.sqrt(2 / 576)) - 1) < 0.03
    assert conv.abs().max().item() <= 2 * math.sqrt(2 / 576)
    shortcut = model.stage3[0].shortcut.weight  # fan_in 32
    assert shortcut.abs().max().item() <= 2 * math.sqrt(2 / 32)


def preact_reference_state(depth: int, num_classes: int) -> dict[str, torch.Tensor]:
    """The default network's weights as its construction draws them from the global
    generator: each convolution constructed in order (PyTorch's default init included),
    then the dense layer (constructed, then uniform in [-0.05, 0.05], zero bias), then
    every convolution He normal, in the same order."""
    n = (depth - 2) // 6
    convs = {"stem": nn.Conv2d(3, 16, 3, bias=False)}
    cin = 16
    for s, channels in enumerate((16, 32, 64), start=1):
        for j in range(n):
            convs[f"stage{s}.{j}.conv1"] = nn.Conv2d(cin, channels, 3, bias=False)
            convs[f"stage{s}.{j}.conv2"] = nn.Conv2d(channels, channels, 3, bias=False)
            if cin != channels:
                convs[f"stage{s}.{j}.shortcut"] = nn.Conv2d(cin, channels, 1, bias=False)
            cin = channels
    fc = nn.Linear(64, num_classes)
    state = {"fc.weight": fc.weight.detach().uniform_(-0.05, 0.05), "fc.bias": torch.zeros(num_classes)}
    for name, layer in convs.items():
        std = math.sqrt(2.0) / math.sqrt(layer.weight[0].numel())  # He: gain sqrt(2) over sqrt(fan_in)
        state[f"{name}.weight"] = layer.weight.detach().normal_(0, std)
    return state


@pytest.mark.parametrize("depth, classes", [(8, 10), (14, 10), (20, 100)])
def test_default_resnet_is_unchanged(depth, classes):
    """The default architecture keeps its state_dict keys and draws: stored runs and
    checkpoints stay loadable and reproducible."""
    torch.manual_seed(15)
    reference = preact_reference_state(depth, classes)
    torch.manual_seed(15)
    model = models.PreActResNet(depth, classes)
    torch.manual_seed(15)
    assert torch.equal(models.PreActResNet(depth, classes, architecture="preact").stem.weight, model.stem.weight)
    state = model.state_dict()
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    buffers = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert set(state) == set(reference) | {f"{bn}.{b}" for bn in norms for b in buffers}
    assert len(norms) == 6 * ((depth - 2) // 6) + 1 and "stem_bn" not in str(list(state))
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def test_released_architecture_by_name_and_bad_architecture():
    torch.manual_seed(16)
    model = models.build_model("resnet14", 10, architecture="released")
    assert isinstance(model, models.PreActResNet) and model.architecture == "released"
    with_head = models.build_model("resnet14", 10, bn_head=True, architecture="released")
    assert isinstance(with_head.head, nn.BatchNorm1d) and (with_head.head.eps, with_head.head.momentum) == (1e-3, 0.01)
    with torch.no_grad():
        assert with_head.train()(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    with pytest.raises(ValueError, match="known: preact, released"):
        models.build_model("resnet14", 10, architecture="keras")
    with pytest.raises(ValueError, match="known: preact, released"):
        models.PreActBlock(16, 16, architecture="resnet")


def test_released_resnet_channels_last():
    """Same outputs in the channels-last layout, the padded strided convolutions included."""
    torch.manual_seed(18)
    model = released(14)
    randomise_batch_norms(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model.eval()(x)
        fast = model.to(memory_format=torch.channels_last)
        out = fast(x.contiguous(memory_format=torch.channels_last))
    assert fast.stage2[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------- ResNet-50


def test_resnet50_is_torchvision_resnet50():
    torch.manual_seed(12)
    ours = models.build_model("resnet50", 14)
    torch.manual_seed(12)
    reference = torchvision.models.resnet50(weights=None)
    assert n_params(reference) == 25_557_032  # torchvision's published count
    assert n_params(ours) == 25_557_032 - (2048 * 1000 + 1000) + 2048 * 14 + 14
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    for key in theirs:
        if not key.startswith("fc."):
            assert torch.equal(mine[key], theirs[key]), key
    assert ours.fc.out_features == 14 and ours.head is None
    assert_uniform_005(ours.fc.weight)
    reference.fc = ours.fc  # same layers, same forward
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


def test_resnet50_loads_weights_from_file(tmp_path):
    torch.manual_seed(13)
    imagenet = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(imagenet.state_dict(), path)
    torch.manual_seed(14)  # a different random init, then overwritten
    model = models.resnet50(num_classes=14, weights_path=path, bn_head=True)
    state, saved = model.state_dict(), imagenet.state_dict()
    for key in saved:
        if not key.startswith("fc."):
            assert torch.equal(state[key], saved[key]), key
    assert model.fc.weight.shape == (14, 2048) and model.fc.bias.shape == (14,)
    assert isinstance(model.head, nn.BatchNorm1d) and model.head.num_features == 14
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 14)
    torch.testing.assert_close(out.mean(dim=0), torch.zeros(14), atol=1e-4, rtol=0)


def test_resnet50_missing_weights_file(tmp_path):
    missing = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(FileNotFoundError) as err:
        models.build_model("resnet50", 14, weights_path=missing)
    assert str(missing) in str(err.value)
    assert "IMAGENET1K_V1" in str(err.value)


def test_resnet50_rejects_a_foreign_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(models.PreActResNet(8).state_dict(), path)
    with pytest.raises(ValueError, match="ResNet-50"):
        models.resnet50(weights_path=path)


# ------------------------------------------- the released code's output layer and LSTM


def _mlp_weights_drawn_by_hand(seed: int, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """The MLP's weights as its default has always drawn them: each ``nn.Linear`` is
    built (PyTorch's own init consumes random numbers) and then redrawn, He normal
    for the hidden layers, uniform in [-0.05, 0.05] for the output layer; after
    them, one more draw that pins the position of the random stream."""
    torch.manual_seed(seed)
    weights = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = nn.Linear(fan_in, fan_out)
        if i < len(sizes) - 2:
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
        else:
            nn.init.uniform_(layer.weight, -0.05, 0.05)
        weights.append(layer.weight.detach())
    return [*weights, torch.rand(5)]


def test_mlp_default_output_init_draws_what_it_always_drew():
    for seed in (0, 11):
        expected = _mlp_weights_drawn_by_hand(seed, (784, 128, 128, 10))
        torch.manual_seed(seed)
        mlp = models.build_model("mlp", 10, input_dim=784, dropout=0.2)
        drawn = [layer.weight.detach() for layer in mlp.linear_layers()] + [torch.rand(5)]
        for ours, theirs in zip(drawn, expected):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        assert mlp.output.weight.abs().max().item() <= 0.05


def test_embedding_he_normal_output_draws_what_it_always_drew():
    """The He-normal output layer replaces a uniform draw made first, so the
    stored ``imdb_embedding`` runs keep their initial weights."""
    torch.manual_seed(21)
    embedding = nn.Embedding(100, 8)
    nn.init.uniform_(embedding.weight, -0.05, 0.05)
    output = nn.Linear(30 * 8, 2)
    nn.init.uniform_(output.weight, -0.05, 0.05)
    nn.init.kaiming_normal_(output.weight, mode="fan_in", nonlinearity="relu")
    after = torch.rand(5)
    torch.manual_seed(21)
    model = models.EmbeddingClassifier(vocab_size=100, length=30, embedding_dim=8, output_init="he_normal")
    torch.testing.assert_close(model.embedding.weight, embedding.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.output.weight, output.weight, rtol=0, atol=0)
    torch.testing.assert_close(torch.rand(5), after, rtol=0, atol=0)


def test_mlp_he_normal_output_layer():
    torch.manual_seed(13)
    released = models.MLP(1024, 1024, hidden=(1024,), output_init="he_normal")
    assert_he_normal(released.output.weight, 1024)
    assert bool((released.output.bias == 0).all())
    torch.manual_seed(13)
    text = models.MLP(1024, 1024, hidden=(1024,))
    torch.testing.assert_close(released.hidden[0].weight, text.hidden[0].weight, rtol=0, atol=0)  # only the output
    assert_uniform_005(text.output.weight)
    for bad in ("glorot", "He_normal"):
        with pytest.raises(ValueError, match=rf"^unknown output_init '{bad}'; known: uniform, he_normal$"):
            models.build_model("mlp", 10, input_dim=784, output_init=bad)


def test_mlp_output_init_reaches_the_stacked_runs():
    """The runner stacks the networks that the experiment's model_kwargs build:
    a He-normal output layer arrives in the batched weights of every run."""
    from dataclasses import replace

    from losscorrection import data, training

    rng = np.random.default_rng(0)
    split = data.split_arrays("toy", rng.random((40, 6), dtype=np.float32), rng.integers(0, 3, 40),
                              rng.random((10, 6), dtype=np.float32), rng.integers(0, 3, 10))
    experiment = replace(training.get_experiment("mnist_fc"), model_kwargs={"dropout": 0.2, "output_init": "he_normal"})
    cells = [training.Cell("cross_entropy", "none", 0.0, run) for run in (3, 4)]
    stack = training.build_runs(experiment, "cross_entropy", cells, split, training.Runtime(torch.device("cpu")))
    for k, cell in enumerate(cells):
        torch.manual_seed(cell.seed)
        alone = models.MLP(6, 3, dropout=0.2, output_init="he_normal")
        torch.manual_seed(cell.seed)
        uniform = models.MLP(6, 3, dropout=0.2)
        assert not torch.equal(alone.output.weight, uniform.output.weight)
        for stacked, layer in zip(stack.weights, alone.linear_layers()):
            torch.testing.assert_close(stacked[k], layer.weight.detach().t(), rtol=0, atol=0)


def test_hard_sigmoid_is_keras_piecewise_linear_sigmoid():
    x = torch.tensor([-10.0, -2.5, -2.0, -1.0, 0.0, 0.5, 2.0, 2.5, 7.0])
    expected = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.5, 0.6, 0.9, 1.0, 1.0])
    torch.testing.assert_close(models.text.hard_sigmoid(x), expected)


def _keras_lstm_by_hand(x: np.ndarray, lstm: nn.LSTM, gate) -> tuple[np.ndarray, np.ndarray]:
    """Keras' LSTM computed example by example and step by step in float64, one
    gate at a time with Keras' weight layout (kernel ``(d, 4H)``, recurrent kernel
    ``(H, 4H)``, one bias; gates i, f, c, o). Returns the hidden states ``(n, L, H)``
    and every gate pre-activation of the i, f and o gates."""
    hidden = lstm.hidden_size
    kernel = lstm.weight_ih_l0.detach().double().numpy().T
    recurrent = lstm.weight_hh_l0.detach().double().numpy().T
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().double().numpy()
    blocks = [slice(g * hidden, (g + 1) * hidden) for g in range(4)]
    states = np.zeros((x.shape[0], x.shape[1], hidden))
    gate_inputs = []
    for example in range(x.shape[0]):
        h, c = np.zeros(hidden), np.zeros(hidden)
        for t in range(x.shape[1]):
            pre = [x[example, t] @ kernel[:, b] + h @ recurrent[:, b] + bias[b] for b in blocks]
            gate_inputs += [pre[0], pre[1], pre[3]]
            c = gate(pre[1]) * c + gate(pre[0]) * np.tanh(pre[2])
            h = gate(pre[3]) * np.tanh(c)
            states[example, t] = h
    return states, np.concatenate(gate_inputs)


def _keras_hard_sigmoid(v: np.ndarray) -> np.ndarray:
    return np.where(v < -2.5, 0.0, np.where(v > 2.5, 1.0, 0.2 * v + 0.5))


def test_hard_sigmoid_lstm_matches_a_step_by_step_computation():
    torch.manual_seed(14)
    model = models.LSTMClassifier(vocab_size=60, embedding_dim=12, hidden_size=7, dense=9,
                                  gate_activation="hard_sigmoid").eval()
    with torch.no_grad():  # large weights: gates in both the saturated and the linear part
        model.lstm.weight_ih_l0.normal_()
        model.embedding.weight.normal_()
    x = tokens(4, 15, vocab=60)
    embedded = model.embedding(x).detach()
    expected, gate_inputs = _keras_lstm_by_hand(embedded.double().numpy(), model.lstm, _keras_hard_sigmoid)
    saturated = np.abs(gate_inputs) > 2.5
    assert 0.1 < saturated.mean() < 0.9, saturated.mean()
    with torch.no_grad():
        states = models.text.lstm_states(embedded, model.lstm, models.text.hard_sigmoid)
        torch.testing.assert_close(states.double(), torch.from_numpy(expected), rtol=1e-5, atol=1e-6)
        logits = model.output(torch.relu(model.dense(torch.from_numpy(expected[:, -1]).float())))
        torch.testing.assert_close(model(x), logits, rtol=1e-5, atol=1e-6)
        sigmoid_gates = model.lstm(embedded)[0]
    assert not torch.allclose(states, sigmoid_gates, atol=1e-3)  # the gates matter


def test_lstm_recurrence_with_sigmoid_gates_is_torch_lstm():
    torch.manual_seed(15)
    lstm = nn.LSTM(10, 6, batch_first=True)
    x = torch.randn(3, 20, 10, requires_grad=True)
    theirs, _ = lstm(x)
    ours = models.text.lstm_states(x, lstm, torch.sigmoid)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    by_hand, _ = _keras_lstm_by_hand(x.detach().double().numpy(), lstm, lambda v: 1 / (1 + np.exp(-v)))
    torch.testing.assert_close(ours.detach().double(), torch.from_numpy(by_hand), rtol=1e-5, atol=1e-6)
    weight = torch.randn_like(ours)
    grads = [torch.autograd.grad((out * weight).sum(), [x, lstm.weight_hh_l0]) for out in (ours, theirs)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="single-layer"):
        models.text.lstm_states(x, nn.LSTM(10, 6, num_layers=2, batch_first=True))
    with pytest.raises(ValueError, match=r"^unknown gate_activation 'relu'; known: sigmoid, hard_sigmoid$"):
        models.build_model("imdb_lstm", 2, gate_activation="relu")


def test_lstm_spatial_dropout_drops_whole_embedding_channels_per_review():
    torch.manual_seed(16)
    model = models.LSTMClassifier(vocab_size=50, embedding_dim=40, hidden_size=4, dense=4, spatial_dropout=0.8)
    fed = []
    model.lstm.register_forward_hook(lambda module, args, out: fed.append(args[0].detach()))
    x = tokens(30, 25, vocab=50)
    embedded = model.embedding(x).detach()
    model.train()(x)
    kept = fed[-1] != 0  # (review, position, channel)
    per_channel = kept.all(dim=1)
    assert bool((per_channel | ~kept.any(dim=1)).all()), "a channel is dropped at some positions only"
    torch.testing.assert_close(fed[-1][kept], embedded[kept] / (1 - 0.8))
    assert abs(per_channel.float().mean().item() - 0.2) < 0.05
    assert not bool((per_channel == per_channel[0]).all()), "each review draws its own mask"
    model.eval()(x)
    assert torch.equal(fed[-1], embedded)
    default = models.LSTMClassifier(vocab_size=50, embedding_dim=40, hidden_size=4, dense=4).train()
    default.lstm.register_forward_hook(lambda module, args, out: fed.append(args[0].detach()))
    default(x)
    assert torch.equal(fed[-1], default.embedding(x).detach())  # the text's model: no spatial dropout


def test_lstm_released_configuration():
    torch.manual_seed(17)
    model = models.build_model("imdb_lstm", 2, embedding_dim=512, spatial_dropout=0.8,
                               gate_activation="hard_sigmoid", output_init="he_normal")
    lstm = 4 * (512 * 512 + 512 * 512 + 2 * 512)
    assert n_params(model) == 5000 * 512 + lstm + 512 * 512 + 512 + 512 * 2 + 2
    assert model.spatial_dropout.p == 0.8 and model.gate_activation == "hard_sigmoid"
    assert abs(model.output.weight.std().item() / math.sqrt(2 / 512) - 1) < 0.15  # 1,024 weights: loose
    assert model.output.weight.abs().max().item() > 0.05  # not the uniform in [-0.05, 0.05]
    with torch.no_grad():
        assert model.train()(tokens(2, 6)).shape == (2, 2)


def test_compiled_kernel_takes_scratch_larger_than_a_thread_stack():
    """Four million classes × dim floats (16 MB, twice a common 8 MB stack) of
    scratch on a tiny batch: the same numbers as the PyTorch formulation."""
    from losscorrection.models.gathered import gathered_linear
    _require_kernel()
    gen = torch.Generator().manual_seed(12)
    classes, dim, length = 4096, 1024, 2
    ids = torch.tensor([[0, 2], [1, 1]])
    table = torch.randn(3, dim, generator=gen).requires_grad_()
    weight = torch.randn(classes, length * dim, generator=gen).requires_grad_()
    grad = torch.randn(2, classes, generator=gen)
    results = []
    for native_kernel in (True, False):
        logits = gathered_linear(ids, table, None, weight, padding_id=0, native_kernel=native_kernel)
        results.append([logits, *torch.autograd.grad(logits, (table, weight), grad)])
    for compiled, pytorch in zip(*results):
        torch.testing.assert_close(compiled, pytorch, rtol=1e-5, atol=1e-4)


def test_compiled_kernel_refuses_sizes_it_cannot_hold():
    from losscorrection.models import native
    from losscorrection.models.gathered import gathered_linear
    _require_kernel()
    with pytest.raises(ValueError, match="gathered_forward: .* got classes=2, dim=3, length=0$"):
        gathered_linear(torch.zeros(4, 0, dtype=torch.long), torch.rand(10, 3), None, torch.rand(2, 0))
    forward, backward = native.kernel().gathered_forward, native.kernel().gathered_backward
    huge = 2**40  # huge × huge floats overflow a 64-bit size
    with pytest.raises(ValueError, match="classes × dim floats addressable"):
        forward(None, 0, 1, None, 1, huge, None, None, huge, -1, None, None, None)
    with pytest.raises(ValueError, match=f"gathered_backward: .* got classes={huge}, dim={huge}, length=1$"):
        backward(None, None, 0, 1, None, huge, None, None, None, huge, None, -1, None, None, None)
    with pytest.raises(MemoryError, match=r"cannot allocate 1073741824 × 1073741824 floats"):  # 4 EiB
        forward(None, 0, 1, None, 1, 2**30, None, None, 2**30, -1, None, None, None)


def test_a_changed_kernel_source_is_compiled_again(monkeypatch, tmp_path):
    from losscorrection.models import native
    _require_kernel()
    monkeypatch.setenv("LOSSCORR_CACHE", str(tmp_path))
    built = []
    for comment in (b"", b"\n/* changed */\n"):
        source = tmp_path / f"kernel{len(built)}.c"
        source.write_bytes(native.SOURCE.read_bytes() + comment)
        monkeypatch.setattr(native, "SOURCE", source)
        native._load.cache_clear()
        try:
            assert native.kernel() is not None, native.status()
            built.append(native.status())
        finally:
            native._load.cache_clear()
    assert built[0] != built[1]  # another cache key: another library, compiled from the new source
    assert len(list((tmp_path / "native").glob("gathered-*.so"))) == 2
