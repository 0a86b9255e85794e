"""The architectures of §5: sizes, forward structure, dropout, init, heads."""

import math

import pytest
import torch
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
