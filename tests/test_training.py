"""The batched trainer (Algorithm 1), the results store and resumable sweeps."""

import copy
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from losscorrection import data, losses, models, noise, store, training
from losscorrection.training import budget, checkpoint, loop, runner
from losscorrection.atomic import locked
from losscorrection.estimation import estimation_error
from losscorrection.results import COLUMNS, METHODS, ResultStore

CPU = torch.device("cpu")
CPU_RUNTIME = training.Runtime(CPU)  # fp32, channels-last for convolutional networks


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits", limit=400)


def group_data(split) -> training.GroupData:
    return training.GroupData(split.x_train, split.x_val, split.x_test, split.y_test, split.num_classes)


def mlps(seeds, **kwargs):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(models.MLP(64, 10, **kwargs))
    return out


def noisy(split, seeds, rate=0.3):
    T = noise.asymmetric("mnist", rate)
    y_tr = np.stack([noise.corrupt(split.y_train.numpy(), T, s) for s in seeds])
    y_va = np.stack([noise.corrupt(split.y_val.numpy(), T, s + 100) for s in seeds])
    return T, torch.tensor(y_tr), torch.tensor(y_va)


SCHEDULE = training.Schedule("adagrad", lr=0.05, epochs=3, batch_size=32)


def train(stack, method, split, y_tr, y_va, T_list, seeds, schedule=SCHEDULE):
    matrices = training.correction_matrices(method, T_list, CPU)
    return training.train_group(
        stack, method, group_data(split), y_tr, y_va, matrices, schedule, seeds, progress=False
    )


@pytest.mark.parametrize("method", ["forward_T", "backward_T", "sigmoid_bn", "bootstrap_hard"])
def test_batched_runs_equal_runs_trained_alone(digits, method):
    """K runs stacked give the same models as each run stacked alone (dropout on)."""
    seeds = [3, 4, 5]
    T, y_tr, y_va = noisy(digits, seeds)
    bn = method in training.BN_HEAD_METHODS
    together = training.StackedMLP(mlps(seeds, bn_head=bn), seeds, CPU_RUNTIME)
    out_together = train(together, method, digits, y_tr, y_va, [T] * 3, seeds)
    for k, seed in enumerate(seeds):
        alone = training.StackedMLP(mlps([seed], bn_head=bn), [seed], CPU_RUNTIME)
        out_alone = train(alone, method, digits, y_tr[k : k + 1], y_va[k : k + 1], [T], [seed])
        assert out_alone[0].test_accuracy == pytest.approx(out_together[k].test_accuracy, abs=1e-9)
        assert out_alone[0].selected_epoch == out_together[k].selected_epoch
        assert out_alone[0].val_loss == pytest.approx(out_together[k].val_loss, rel=1e-5)
        for a, b in zip(alone.state(), together.state()):
            torch.testing.assert_close(a[0], b[k], rtol=1e-5, atol=1e-6)


def test_build_runs_initialises_each_run_from_its_seed(digits):
    """The runner's networks: run k starts from torch.manual_seed(k) and its own
    dropout seed, the same networks as the ones built here by hand."""
    experiment = training.get_experiment("digits_fc")
    seeds = [3, 5]
    cells = [training.Cell("forward_T", "asymmetric", 0.3, k) for k in seeds]
    built = training.build_runs(experiment, "forward_T", cells, digits, CPU_RUNTIME)
    by_hand = training.StackedMLP(mlps(seeds, **experiment.model_kwargs), [training.dropout_seed(k) for k in seeds],
                                  CPU_RUNTIME)
    T, y_tr, y_va = noisy(digits, seeds)
    shared = training.make_group_data(experiment, digits, CPU)
    assert shared.pixel_mean is None and not shared.augment  # flat inputs: nothing to normalise or augment
    matrices = training.correction_matrices("forward_T", [T] * 2, CPU)
    runs = [training.train_group(stack, "forward_T", data_, y_tr, y_va, matrices, SCHEDULE, seeds, progress=False)
            for stack, data_ in ((built, shared), (by_hand, group_data(digits)))]
    for ours, theirs in zip(*runs):
        assert ours.test_accuracy == theirs.test_accuracy and ours.selected_epoch == theirs.selected_epoch


def test_stacked_mlp_matches_plain_modules(digits):
    """The stacked implementation trains what the nn.Module MLP trains (dropout
    off, so both see the same randomness). One epoch: batched and plain matrix
    products round differently, and AdaGrad's normalised steps let that
    rounding grow slowly over many epochs."""
    seeds = [0, 1]
    T, y_tr, y_va = noisy(digits, seeds)
    stacked = training.StackedMLP(mlps(seeds, dropout=0.0), seeds, CPU_RUNTIME)
    plain = training.ModuleRuns(mlps(seeds, dropout=0.0), CPU_RUNTIME)
    one_epoch = replace(SCHEDULE, epochs=1)
    out_s = train(stacked, "forward_T", digits, y_tr, y_va, [T] * 2, seeds, one_epoch)
    out_p = train(plain, "forward_T", digits, y_tr, y_va, [T] * 2, seeds, one_epoch)
    for s, p in zip(out_s, out_p):
        assert s.selected_epoch == p.selected_epoch
        # float rounding differs (batched vs plain products): a borderline test example may flip
        assert s.test_accuracy == pytest.approx(p.test_accuracy, abs=1.0)
        assert s.val_loss == pytest.approx(p.val_loss, rel=1e-4)
    for k, module in enumerate(plain.modules):
        for layer, W, b in zip(module.linear_layers(), stacked.weights, stacked.biases):
            torch.testing.assert_close(layer.weight.t(), W[k].detach(), rtol=1e-3, atol=3e-4)
            torch.testing.assert_close(layer.bias, b[k, 0].detach(), rtol=1e-3, atol=3e-4)


def test_stacked_bn_head_matches_batchnorm():
    """The stacked batch-normalised head computes the models' nn.BatchNorm1d head
    (learned scale and shift, Keras' eps and momentum):
    training-mode outputs and gradients, running statistics, evaluation mode.
    (Whole training runs are not compared: the output bias in front of the head
    has a zero gradient in exact arithmetic, and AdaGrad turns its rounding
    noise into steps of either sign, so two implementations drift apart.)"""
    seeds = [0, 1]
    modules = mlps(seeds, dropout=0.0, bn_head=True)
    stacked = training.StackedMLP(modules, seeds, CPU_RUNTIME)
    x = torch.rand(2, 48, 64, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 10, (2, 48), generator=torch.Generator().manual_seed(1))
    for step in range(3):  # running statistics accumulate over steps
        logits = stacked.forward(x + step, train=True)
        loss = training.per_run_losses("unhinged_bn", logits, target, None).mean(dim=1).sum()
        grads = torch.autograd.grad(loss, stacked.weights + stacked.head_affine)
        for k, module in enumerate(modules):
            module.train()
            reference = module(x[k] + step)
            torch.testing.assert_close(logits[k], reference, rtol=1e-4, atol=5e-5)
            ref_loss = losses.unhinged(reference, target[k])
            ref_grads = torch.autograd.grad(ref_loss, [layer.weight for layer in module.linear_layers()]
                                            + [module.head.weight, module.head.bias])
            for g, r in zip(grads, ref_grads):
                torch.testing.assert_close(g[k].squeeze(0), r.t(), rtol=1e-3, atol=1e-5)
            with torch.no_grad():  # a learned scale and shift, different per run
                module.head.weight.mul_(1.5 + k)
                module.head.bias.add_(0.1 * (k + 1))
                stacked.head_affine[0][k].mul_(1.5 + k)
                stacked.head_affine[1][k].add_(0.1 * (k + 1))
    for k, module in enumerate(modules):
        torch.testing.assert_close(stacked.running_mean[k, 0], module.head.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stacked.running_var[k, 0], module.head.running_var, rtol=1e-5, atol=1e-6)
        module.eval()
        torch.testing.assert_close(stacked.forward(x[k], train=False, shared=True)[k], module(x[k]),
                                   rtol=1e-4, atol=1e-5)


def test_selected_epoch_has_the_lowest_validation_loss(digits):
    seeds = [7, 8]
    T, y_tr, y_va = noisy(digits, seeds, rate=0.6)
    stack = training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME)
    outcomes = training.train_group(stack, "cross_entropy", group_data(digits), y_tr, y_va, None,
                                    replace(SCHEDULE, epochs=6), seeds, progress=False)
    for out in outcomes:
        assert len(out.val_history) == 6
        assert out.selected_epoch == int(np.argmin(out.val_history)) + 1
        assert out.val_loss == min(out.val_history)
    # the restored weights are the selected epoch's: their validation loss is val_loss
    with torch.no_grad():
        logits = stack.forward(digits.x_val, train=False, shared=True)
        val = training.per_run_losses("cross_entropy", logits, y_va, None).mean(dim=1)
        val_accuracy = 100.0 * (logits.argmax(dim=-1) == y_va).double().mean(dim=1)
    np.testing.assert_allclose(val.numpy(), [o.val_loss for o in outcomes], rtol=1e-5)
    # ... and their accuracy against the noisy validation labels is val_accuracy
    np.testing.assert_allclose(val_accuracy.numpy(), [o.val_accuracy for o in outcomes], rtol=1e-6)
    assert len({o.val_accuracy for o in outcomes}) == 2  # per run, not shared


def test_on_epoch_sees_each_epochs_networks_before_selection(digits):
    seeds = [3, 4]
    T, y_tr, y_va = noisy(digits, seeds, rate=0.6)
    stack = training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME)
    seen = {}

    def record(epoch, current):
        with torch.no_grad():
            logits = current.forward(digits.x_val, train=False, shared=True)
            seen[epoch] = training.per_run_losses("cross_entropy", logits, y_va, None).mean(dim=1)

    outcomes = training.train_group(stack, "cross_entropy", group_data(digits), y_tr, y_va, None,
                                    replace(SCHEDULE, epochs=4), seeds, progress=False, on_epoch=record)
    assert sorted(seen) == [1, 2, 3, 4]
    for k, out in enumerate(outcomes):  # the callback's networks are those model selection compares
        np.testing.assert_allclose([seen[e][k].item() for e in range(1, 5)], out.val_history, rtol=1e-5)


def test_cell_validation():
    with pytest.raises(ValueError, match="unknown method"):
        training.Cell("nope", "none", 0.0, 0)
    with pytest.raises(ValueError, match="unknown noise"):
        training.Cell("forward_T", "gaussian", 0.1, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        training.Cell("forward_T", "symmetric", 1.0, 0)
    with pytest.raises(ValueError, match="unknown experiment"):
        training.get_experiment("imagenet")
    assert training.get_experiment("mnist10k").key == "mnist10k_fc"
    assert training.get_experiment("mnist").key == "mnist_fc"  # by data set
    with pytest.raises(ValueError, match="unknown experiment"):
        training.get_experiment("cifar10")  # two experiments use it and no key has that prefix alone


def test_table_cells_cover_the_block():
    cells = training.table_cells(training.EXPERIMENTS["mnist10k_fc"], runs=5)
    assert len(cells) == 10 * 4 * 5
    assert {c.method for c in cells} == set(METHODS)


# ------------------------------------------------------------- sweeps and the store


def test_digits_sweep_end_to_end_and_resume(tmp_path, monkeypatch):
    """A whole smoke Table 2 block on digits; interrupted, it resumes without
    retraining finished runs; T̂ errors match the stored T̂."""
    exp = training.EXPERIMENTS["digits_fc"]
    cells = training.table_cells(exp, runs=1)
    calls = []
    real = runner.train_job

    def interrupted(context, job, estimated):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(job.method)
        return real(context, job, estimated)

    monkeypatch.setattr(runner, "train_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.run_cells(exp, cells, profile="smoke", device="cpu", results_dir=tmp_path, progress=False)
    store = ResultStore(tmp_path)
    partial = store.load("digits_fc")
    assert len(partial) == 3 * 4  # three finished methods x four noise settings
    assert calls[0] == "cross_entropy"

    calls.clear()
    monkeypatch.setattr(runner, "train_job", lambda context, job, estimated: (calls.append(job.method),
                                                                               real(context, job, estimated))[1])
    new = training.run_cells(exp, cells, profile="smoke", device="cpu", results_dir=tmp_path, progress=False)
    assert len(new) == 40 - 12
    assert "cross_entropy" not in calls  # T̂ came from the store, stage 1 was not redone
    full = store.load("digits_fc")
    assert tuple(full.columns) == COLUMNS and len(full) == 40
    assert not full.duplicated(["method", "noise", "rate", "run", "profile"]).any()
    assert full["test_accuracy"].between(0, 100).all()
    assert set(full["profile"]) == {"smoke"} and set(full["epochs"]) == {2}

    transitions = store.load_transitions("digits_fc")
    for row in full[full["method"].str.endswith("That")].itertuples():
        T = training.transition_for(exp, 10, row.noise, row.rate)
        T_hat = transitions[f"{row.noise}/{row.rate:g}/{row.run}/smoke"]
        assert row.T_error == pytest.approx(estimation_error(T_hat, T), rel=1e-9)
    assert full[~full["method"].str.endswith("That")]["T_error"].isna().all()

    # nothing left to do: a third call trains nothing
    calls.clear()
    assert training.run_cells(exp, cells, profile="smoke", device="cpu", results_dir=tmp_path,
                              progress=False).empty
    assert calls == []


def test_noisy_labels_are_shared_by_methods_and_follow_T():
    split = data.load_dataset("digits")
    exp = training.EXPERIMENTS["digits_fc"]
    a = training.noisy_labels(exp, split, "asymmetric", 0.4, run=2)
    b = training.noisy_labels(exp, split, "asymmetric", 0.4, run=2)
    c = training.noisy_labels(exp, split, "asymmetric", 0.4, run=3)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert (a.y_train != c.y_train).any()
    flipped = split.y_train.numpy() != a.y_train
    assert set(split.y_train.numpy()[flipped]) <= {2, 3, 5, 6, 7}
    none = training.noisy_labels(exp, split, "none", 0.0, run=0)
    np.testing.assert_array_equal(none.y_train, split.y_train.numpy())


def test_stacked_labels_put_run_k_in_row_k():
    split = data.load_dataset("digits")
    exp = training.EXPERIMENTS["digits_fc"]
    runs = [training.noisy_labels(exp, split, "symmetric", 0.3, run=k) for k in (4, 1, 7)]
    y_train, y_val = training.stacked_labels(runs)
    assert y_train.dtype == y_val.dtype == torch.int64
    assert y_train.shape == (3, len(split.y_train)) and y_val.shape == (3, len(split.y_val))
    for k, labels in enumerate(runs):
        np.testing.assert_array_equal(y_train[k].numpy(), labels.y_train)
        np.testing.assert_array_equal(y_val[k].numpy(), labels.y_val)


def test_store_appends_atomically_and_rejects_bad_rows(tmp_path):
    store = ResultStore(tmp_path)
    row = {c: 0 for c in COLUMNS} | {"experiment": "x", "method": "cross_entropy", "noise": "none",
                                     "rate": 0.0, "run": 0, "profile": "smoke"}
    store.append([row])
    store.append([row | {"run": 1}])
    assert len(store.load("x")) == 2
    assert store.has("x", "cross_entropy", "none", 0.0, 1, "smoke")
    assert not store.has("x", "cross_entropy", "none", 0.0, 1, "paper")
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="missing columns"):
        store.append([{"experiment": "x"}])


def test_singular_T_is_mixed_with_the_identity_for_backward_correction():
    T = noise.asymmetric("mnist", 0.5)  # 5 <-> 6 at 0.5: two equal rows, singular
    with pytest.warns(RuntimeWarning, match="identity_mix=0.01"):
        inverse = training.invertible_backward_matrix(T)
    mixed = 0.99 * T + 0.01 * np.eye(10)
    np.testing.assert_allclose(inverse @ mixed, np.eye(10), atol=1e-9)
    regular = noise.asymmetric("mnist", 0.2)
    np.testing.assert_allclose(training.invertible_backward_matrix(regular), np.linalg.inv(regular), atol=1e-12)


def resnets(seeds, bn_head=False, architecture="preact"):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        model = models.build_model("resnet8", 10, bn_head=bn_head, architecture=architecture)
        with torch.no_grad():  # convolution biases (released network) start at zero: move them
            for layer in model.modules():
                if isinstance(layer, torch.nn.Conv2d) and layer.bias is not None:
                    layer.bias.uniform_(-0.2, 0.2)
        out.append(model)
    return out


def convolution_and_batch_norm_settings(model):
    """(name, has a bias, eps, momentum) of every convolution (eps None) and batch norm."""
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    return [(name, m.bias is not None, m.eps if isinstance(m, norms) else None, getattr(m, "momentum", None))
            for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, *norms))]


def assert_same_gradients(grouped, separate):
    """Run k's share of every grouped parameter's gradient equals its own module's."""
    by_name = dict(grouped.model.named_parameters())
    for k, module in enumerate(separate):
        for name, p in module.named_parameters():
            grad = by_name[name].grad.reshape(len(separate), -1)[k]  # logical order, in any memory layout
            # atol: a bias in front of a batch norm has a zero gradient up to rounding
            torch.testing.assert_close(grad, p.grad.flatten(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("architecture", ["preact", "released"])
@pytest.mark.parametrize("bn_head", [False, True])
def test_grouped_resnets_compute_each_run_exactly(bn_head, architecture):
    """K ResNets as one grouped network: per-run outputs, gradients and batch-norm
    statistics equal those of the K separate modules, in training and in evaluation
    mode; the released network's convolution biases and Keras batch norms included."""
    seeds = [0, 1, 2]
    separate = resnets(seeds, bn_head, architecture)
    grouped = training.GroupedRuns(resnets(seeds, bn_head, architecture), CPU_RUNTIME)
    settings = convolution_and_batch_norm_settings(separate[0])
    assert convolution_and_batch_norm_settings(grouped.model) == settings
    if architecture == "released":
        assert {(eps, momentum) for _, _, eps, momentum in settings if eps} == {(1e-3, 0.01)}  # Keras
        assert sum(has_bias for name, has_bias, eps, _ in settings if not eps) == 9  # every convolution
    x = torch.randn(3, 6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 10, (3, 6), generator=torch.Generator().manual_seed(1))
    logits = grouped.forward(x, train=True)
    loss = training.per_run_losses("cross_entropy", logits, target, None).mean(dim=1).sum()
    loss.backward()
    for k, module in enumerate(separate):
        module.train()
        reference = module(x[k])
        torch.testing.assert_close(logits[k], reference, rtol=1e-4, atol=1e-5)
        losses.cross_entropy(reference, target[k]).backward()
    assert_same_gradients(grouped, separate)
    for k, module in enumerate(separate):
        buffers = dict(grouped.model.named_buffers())
        for name, b in module.named_buffers():
            if not name.endswith("num_batches_tracked"):
                torch.testing.assert_close(buffers[name].reshape(3, -1)[k], b.flatten(), rtol=1e-4, atol=1e-6)
    for p in [*grouped.parameters(), *(q for module in separate for q in module.parameters())]:
        p.grad = None
    shared = torch.randn(5, 3, 16, 16)
    evaluated = grouped.forward(shared, train=False, shared=True)
    evaluated.square().mean(dim=(1, 2)).sum().backward()
    for k, module in enumerate(separate):
        module.eval()
        reference = module(shared)
        torch.testing.assert_close(evaluated[k], reference, rtol=1e-4, atol=1e-5)
        reference.square().mean().backward()
    assert_same_gradients(grouped, separate)


def test_grouped_training_keeps_the_best_epoch_per_run():
    seeds = [0, 1]
    split = data.Split("tiny", "", 10, *(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8) if i % 2 == 0
                                        else torch.randint(0, 10, (n,)) for i, n in
                                        enumerate((64, 64, 32, 32, 32, 32))), class_names=tuple("0123456789"))
    group = training.GroupData(split.x_train, split.x_val, split.x_test, split.y_test, 10,
                               pixel_mean=data.pixel_mean(split.x_train), augment=True)
    y_tr = torch.stack([split.y_train] * 2)
    y_va = torch.stack([split.y_val] * 2)
    schedule = training.Schedule("sgd", 0.05, 3, batch_size=16, momentum=0.9, weight_decay=1e-4)
    stack = training.GroupedRuns(resnets(seeds), CPU_RUNTIME)
    assert stack.model.stem.weight.is_contiguous(memory_format=torch.channels_last)  # the runtime's layout
    outcomes = training.train_group(stack, "cross_entropy", group, y_tr, y_va, None, schedule, seeds,
                                    progress=False)
    with torch.no_grad():
        val = training.per_run_losses(
            "cross_entropy", stack.forward(group.prepare(split.x_val, False), train=False, shared=True),
            y_va, None).mean(dim=1)
    for k, out in enumerate(outcomes):
        assert out.selected_epoch == int(np.argmin(out.val_history)) + 1
        assert val[k].item() == pytest.approx(out.val_loss, rel=1e-4)


class Interrupted(Exception):
    """Stands for a process killed in the middle of training."""


def interrupt_at(stop: int):
    """An ``on_epoch`` callback that stands for the process being killed in epoch ``stop``."""

    def on_epoch(epoch, stack):
        if epoch == stop:
            raise Interrupted

    return on_epoch


def tiny_images():
    gen = torch.Generator().manual_seed(5)
    sizes = {"train": 48, "val": 32, "test": 32}
    x = {k: torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=gen) for k, n in sizes.items()}
    y = {k: torch.randint(0, 10, (n,), generator=gen) for k, n in sizes.items()}
    group = training.GroupData(x["train"], x["val"], x["test"], y["test"], 10,
                               pixel_mean=data.pixel_mean(x["train"]), augment=True)
    return group, y["train"], y["val"]


def resumable_setups(digits):
    """(make a fresh stack, data, noisy labels, schedule) for the MLP and the grouped ResNets."""
    seeds = [3, 4]
    T, y_tr, y_va = noisy(digits, seeds, rate=0.4)
    mlp = (lambda: training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME), group_data(digits), y_tr, y_va,
           replace(SCHEDULE, epochs=5))
    images, y_img_tr, y_img_va = tiny_images()
    resnet = (lambda: training.GroupedRuns(resnets(seeds), CPU_RUNTIME), images, torch.stack([y_img_tr] * 2),
              torch.stack([y_img_va] * 2), training.Schedule("sgd", 0.05, 5, batch_size=16, momentum=0.9,
                                                             weight_decay=1e-4, milestones=(2, 4)))
    return {"stacked MLP": mlp, "grouped ResNets": resnet}


@pytest.mark.parametrize("kind", ["stacked MLP", "grouped ResNets"])
def test_an_interrupted_group_resumes_and_ends_as_if_uninterrupted(digits, tmp_path, kind):
    make_stack, group, y_tr, y_va, schedule = resumable_setups(digits)[kind]
    seeds = [3, 4]

    def train(stack, **kwargs):
        torch.manual_seed(123)  # the global stream (augmentation) starts at the same state
        return training.train_group(stack, "cross_entropy", group, y_tr, y_va, None, schedule, seeds,
                                    progress=False, **kwargs)

    straight_stack = make_stack()
    straight = train(straight_stack)

    checkpoint = tmp_path / "group.pt"
    with pytest.raises(Interrupted):
        train(make_stack(), checkpoint=checkpoint, checkpoint_seconds=0.0, on_epoch=interrupt_at(4))
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 3  # the last finished epoch
    torch.manual_seed(999)  # a new process: its global stream is elsewhere, the checkpoint restores it
    resumed_stack = make_stack()
    resumed = training.train_group(resumed_stack, "cross_entropy", group, y_tr, y_va, None, schedule, seeds,
                                   progress=False, checkpoint=checkpoint, checkpoint_seconds=0.0)
    for a, b in zip(straight, resumed):
        assert a.val_history == b.val_history
        assert (a.selected_epoch, a.test_accuracy, a.val_accuracy) == (b.selected_epoch, b.test_accuracy,
                                                                        b.val_accuracy)
    for a, b in zip(straight_stack.snapshot(), resumed_stack.snapshot()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_run_cells_removes_the_checkpoint_of_a_stored_group(tmp_path, monkeypatch):
    written = []
    save = loop.save_checkpoint

    def spy(path, state):
        written.append((Path(path), state["epoch"]))
        save(path, state)

    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)  # save after every epoch
    monkeypatch.setattr(loop, "save_checkpoint", spy)
    frame = training.run_cells("digits_fc", [training.Cell("cross_entropy", "none", 0.0, 0)], profile="smoke",
                               device="cpu", results_dir=tmp_path, progress=False)
    assert len(frame) == 1
    epochs = training.profile_settings(training.get_experiment("digits_fc"), "smoke").schedule.epochs
    assert [epoch for _, epoch in written] == list(range(1, epochs + 1))
    assert written[0][0].parent == tmp_path / training.CHECKPOINT_FOLDER
    assert not written[0][0].exists()  # removed once the run was stored


def test_compiled_grouped_network_computes_what_the_plain_one_does():
    """``torch.compile`` changes how the grouped forward pass runs, not what it computes."""
    plain = training.GroupedRuns(resnets([0, 1]), CPU_RUNTIME)
    compiled = training.GroupedRuns(resnets([0, 1]), CPU_RUNTIME, compile=True)
    x = torch.randn(2, 8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    target = torch.randint(0, 10, (2, 8), generator=torch.Generator().manual_seed(3))
    for stack in (plain, compiled):
        logits = stack.forward(x, train=True)
        training.per_run_losses("cross_entropy", logits, target, None).mean(dim=1).sum().backward()
    torch.testing.assert_close(compiled.forward(x, train=True), plain.forward(x, train=True), rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5)


def test_run_cells_on_your_own_split_and_experiment(tmp_path):
    """A user's Experiment with a given Split trains exactly what the registered
    experiment trains on the same data."""
    cells = [training.Cell("forward_That", "asymmetric", 0.4, 0)]
    digits_split = data.load_dataset("digits", limit=512)
    mine = replace(training.get_experiment("digits_fc"), key="mine_fc", dataset="mine")
    ours = training.run_cells(mine, cells, profile="smoke", device="cpu", results_dir=tmp_path / "mine",
                              progress=False, split=digits_split)
    registered = training.run_cells("digits_fc", cells, profile="smoke", device="cpu",
                                    results_dir=tmp_path / "registered", progress=False)
    assert list(ours["experiment"].unique()) == ["mine_fc"]
    assert ResultStore(tmp_path / "mine").path("mine_fc").is_file()
    pd.testing.assert_series_equal(ours.sort_values("method")["test_accuracy"].reset_index(drop=True),
                                   registered.sort_values("method")["test_accuracy"].reset_index(drop=True))


def test_checkpoints_are_written_at_most_every_checkpoint_seconds(digits, tmp_path, monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    saved_epochs = []
    save = loop.save_checkpoint

    def spy(path, state):
        saved_epochs.append(state["epoch"])
        save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", spy)

    def half_a_second_per_epoch(epoch, stack):
        clock["now"] = 0.5 * epoch

    seeds = [3]
    T, y_tr, y_va = noisy(digits, seeds)
    training.train_group(training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME), "cross_entropy", group_data(digits),
                         y_tr, y_va, None, replace(SCHEDULE, epochs=6), seeds, progress=False,
                         on_epoch=half_a_second_per_epoch, checkpoint=tmp_path / "group.pt",
                         checkpoint_seconds=1.0)
    assert saved_epochs == [2, 4, 6]  # every second of the (fake) clock, not every epoch once due


def test_a_resumed_group_reports_the_time_of_an_uninterrupted_one(digits, tmp_path, monkeypatch):
    """Each epoch takes one second of a fake clock. A process stopped during epoch 4
    keeps 3 seconds in its checkpoint; the next process, whose clock starts
    elsewhere, redoes epoch 4 and adds 3: 6 seconds, as without the interruption
    (not the last process's 3, nor 7 with the lost epoch)."""
    clock = {"now": 0.0}
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    seeds = [3, 4]
    T, y_tr, y_va = noisy(digits, seeds)
    schedule = replace(SCHEDULE, epochs=6)

    def train(stop_at=None, **kwargs):
        def one_second_per_epoch(epoch, stack):
            clock["now"] += 1.0
            if epoch == stop_at:
                raise Interrupted

        return training.train_group(training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME), "cross_entropy",
                                    group_data(digits), y_tr, y_va, None, schedule, seeds, progress=False,
                                    on_epoch=one_second_per_epoch, checkpoint_seconds=0.0, **kwargs)

    assert [o.group_seconds for o in train()] == [6.0, 6.0]
    checkpoint = tmp_path / "group.pt"
    with pytest.raises(Interrupted):
        train(stop_at=4, checkpoint=checkpoint)
    clock["now"] = 1000.0  # a new process
    assert [o.group_seconds for o in train(checkpoint=checkpoint)] == [6.0, 6.0]


def test_a_deadline_checkpoints_the_last_epoch_that_fits_and_the_same_call_continues(digits, tmp_path, monkeypatch):
    """Epochs of one (fake) second and a deadline at 3.5 s: epoch 4 would end at
    4 s, so the group stops after epoch 3 with its state saved, and continuing
    ends exactly as a group that was never stopped."""
    clock = {"now": 0.0}
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    seeds = [3, 4]
    T, y_tr, y_va = noisy(digits, seeds)
    schedule = replace(SCHEDULE, epochs=6)

    def train(**kwargs):
        def one_second_per_epoch(epoch, stack):
            clock["now"] += 1.0

        torch.manual_seed(123)
        return training.train_group(training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME), "cross_entropy",
                                    group_data(digits), y_tr, y_va, None, schedule, seeds, progress=False,
                                    on_epoch=one_second_per_epoch, checkpoint_seconds=100.0, **kwargs)

    straight = train()
    checkpoint = tmp_path / "group.pt"
    clock["now"] = 0.0
    with pytest.raises(training.TimeLimitReached, match="stopped after epoch 3 of 6"):
        train(checkpoint=checkpoint, deadline=3.5)
    saved = torch.load(checkpoint, weights_only=False)
    assert (saved["epoch"], saved["seconds"]) == (3, 3.0)  # saved at the stop, not only every 100 s
    with pytest.raises(training.TimeLimitReached, match="before epoch 4"):  # already past it: no epoch started
        train(checkpoint=checkpoint, deadline=clock["now"])
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 3
    resumed = train(checkpoint=checkpoint, deadline=clock["now"] + 3.5)  # epochs 4-6 end at +3 s: no stop
    assert [(a.val_history, a.test_accuracy) for a in straight] == [(b.val_history, b.test_accuracy) for b in resumed]
    with pytest.raises(ValueError, match="needs a checkpoint"):
        train(deadline=10.0)


# ------------------------------------------------------------- run independence


def module_run_setups(digits):
    """(networks of some seeds, their data, noisy labels, schedule): an MLP with dropout
    and ResNets with augmentation, both stepped as separate modules."""
    T, y_tr, y_va = noisy(digits, [3, 4, 5], rate=0.4)
    images, y_img_tr, y_img_va = tiny_images()
    return {
        "MLP with dropout": (lambda seeds: mlps(seeds, dropout=0.5), group_data(digits), y_tr, y_va,
                             replace(SCHEDULE, epochs=2)),
        "ResNets with augmentation": (resnets, images, torch.stack([y_img_tr] * 3),
                                      torch.stack([y_img_va] * 3),
                                      training.Schedule("sgd", 0.05, 2, batch_size=16, momentum=0.9,
                                                        weight_decay=1e-4)),
    }


@pytest.mark.parametrize("setup", ["MLP with dropout", "ResNets with augmentation"])
def test_a_run_ends_bit_identical_alone_and_in_a_group(digits, setup):
    """Dropout masks, augmentations and data order come from each run's own
    generators, so the runs beside a run change nothing in it."""
    build, group, y_tr, y_va, schedule = module_run_setups(digits)[setup]
    seeds = [3, 4, 5]

    def train_runs(indices):
        stack = training.ModuleRuns(build([seeds[i] for i in indices]), CPU_RUNTIME,
                                    dropout_seeds=[training.dropout_seed(seeds[i]) for i in indices])
        outcomes = training.train_group(
            stack, "cross_entropy", group, y_tr[indices], y_va[indices], None, schedule,
            [training.order_seed(seeds[i]) for i in indices],
            augment_seeds=[training.augment_seed(seeds[i]) for i in indices], progress=False)
        return outcomes, stack

    together, together_stack = train_runs([0, 1, 2])
    alone, alone_stack = train_runs([1])
    assert alone[0].val_history == together[1].val_history
    assert alone[0].test_accuracy == together[1].test_accuracy
    for a, b in zip(alone_stack.modules[0].state_dict().values(), together_stack.modules[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_layers_with_dropout_are_not_grouped():
    with pytest.raises(TypeError, match="dropout"):
        training.group_modules([torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
                                for _ in range(2)])


def test_per_run_augmentation_does_not_depend_on_the_group():
    group, _, _ = tiny_images()
    batch = group.x_train[:8]
    generators = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    three = group.prepare(torch.stack([batch] * 3), True, generators([10, 11, 12]))
    one = group.prepare(batch[None], True, generators([11]))
    torch.testing.assert_close(three[1], one[0], rtol=0, atol=0)
    assert not torch.equal(three[0], three[1])  # runs draw different crops and flips
    with pytest.raises(ValueError, match="one generator per run"):
        group.prepare(torch.stack([batch] * 3), True)


# ------------------------------------------------------------------ weight decay


@pytest.mark.parametrize("scope", ["kernels", "all"])
def test_weight_decay_scope(scope):
    """``kernels`` (the authors' code): gradient 2λw on convolution and dense
    kernels, nothing on biases and batch-norm scales; ``all``: λw on everything."""
    stack = training.ModuleRuns(resnets([0]), CPU_RUNTIME)
    schedule = training.Schedule("sgd", lr=1.0, epochs=1, weight_decay=0.1, weight_decay_scope=scope)
    opt, _ = loop._optimizer(schedule, stack)
    before = {name: p.detach().clone() for name, p in stack.modules[0].named_parameters()}
    for p in stack.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves the parameters
    opt.step()
    kernels = {id(p) for p in stack.kernels()}
    assert kernels and len(kernels) < len(stack.parameters())
    for name, p in stack.modules[0].named_parameters():
        factor = (0.8 if id(p) in kernels else 1.0) if scope == "kernels" else 0.9
        torch.testing.assert_close(p.detach(), factor * before[name], rtol=1e-6, atol=0)


# ------------------------------------------------------------ what rows record


def test_rows_record_size_precision_mixing_and_a_profile_only_when_it_was_followed(tmp_path):
    cells = [training.Cell("backward_T", "asymmetric", 0.5, 0), training.Cell("forward_T", "none", 0.0, 0)]
    custom = training.run_cells("digits_fc", cells, profile="paper", device="cpu", results_dir=tmp_path,
                                epochs=1, limit=50, progress=False)
    assert set(custom["profile"]) == {"paper:epochs=1:limit=50"}
    expected = "bf16" if training.auto_bf16("mlp", torch.device("cpu")) else "fp32"
    assert set(custom["train_size"]) == {50} and set(custom["precision"]) == {expected}
    mixes = custom.set_index("method")["identity_mix"]
    assert mixes["backward_T"] == 0.01  # 5 <-> 6 flips at N = 0.5: T is singular
    assert np.isnan(mixes["forward_T"])
    rows, note = training.ensure_results("digits_fc", cells, profile="paper", train_missing=False,
                                         results_dir=tmp_path)
    assert rows.empty and note.startswith("not run here: 2 runs, about ") and "on this CPU" in note
    smoke = training.run_cells("digits_fc", cells[1:], profile="smoke", device="cpu", results_dir=tmp_path,
                               progress=False)
    assert list(smoke["profile"]) == ["smoke"] and list(smoke["train_size"]) == [512]


# ------------------------------------------------------------------- budgets


def test_cost_estimates_come_from_stored_runs_else_from_reference_throughput():
    experiment = training.get_experiment("imdb_lstm")
    schedule = training.profile_settings(experiment, "paper").schedule
    reference = budget.estimate_seconds(experiment, 2, schedule, 22_500, "cpu")
    assert reference == pytest.approx(2 * 50 * 22.5 * budget.REFERENCE_SECONDS["cpu"]["imdb_lstm"])
    stored = pd.DataFrame({"model": "imdb_lstm", "device": ["cpu: x86_64", "cpu: x86_64", "cuda: H100"],
                           "wall_seconds": [10.0, 30.0, 1.0], "epochs": [2, 2, 2], "train_size": [1000, 1000, 1000]})
    # median over the CPU rows of the same training size: 10 s per epoch per 1,000 examples
    assert budget.estimate_seconds(experiment, 3, schedule, 1000, "cpu", stored) == pytest.approx(3 * 50 * 10.0)
    # rows of another training size say nothing: the reference throughput instead
    assert budget.estimate_seconds(experiment, 3, schedule, 500, "cpu", stored) == pytest.approx(
        3 * 50 * 0.5 * budget.REFERENCE_SECONDS["cpu"]["imdb_lstm"])
    assert budget.estimate_seconds(experiment, 1, schedule, 500, "tpu") == float("inf")
    # a CPU without native bf16 trains the LSTM in fp32: the bf16 reference, scaled
    fp32 = budget.estimate_seconds(experiment, 2, schedule, 22_500, "cpu", bf16=False)
    assert fp32 == pytest.approx(reference * 1435 / 878)
    assert budget.estimate_seconds(experiment, 2, schedule, 22_500, "cpu", bf16=True) == pytest.approx(reference)
    mlp = training.get_experiment("digits_fc")  # measured in fp32: never scaled
    assert budget.estimate_seconds(mlp, 1, schedule, 1000, "cpu", bf16=False) == pytest.approx(
        50 * budget.REFERENCE_SECONDS["cpu"]["mlp"])
    # only stored rows of the precision the runs would use count
    stored = stored.assign(precision=["bf16", "fp32", "bf16"])
    assert budget.estimate_seconds(experiment, 3, schedule, 1000, "cpu", stored, bf16=False) == pytest.approx(3 * 50 * 15.0)
    assert budget.estimate_seconds(experiment, 3, schedule, 1000, "cpu", stored, bf16=True) == pytest.approx(3 * 50 * 5.0)


def test_a_stored_run_of_a_sibling_network_calibrates_the_reference():
    """Without rows of its own network, a ResNet-32 estimate comes from stored
    runs of other networks of the same training size on the same kind of
    device, scaled by the ratio of the networks' references."""
    resnet32 = training.get_experiment("cifar10n_resnet32")
    schedule = training.profile_settings(resnet32, "paper").schedule
    cpu, cuda = budget.REFERENCE_SECONDS["cpu"], budget.REFERENCE_SECONDS["cuda"]
    stored = pd.DataFrame({"model": ["resnet14", "resnet14", "resnet14", "mlp"],
                           "device": ["cpu: x86_64, 1 thread", "cuda: H200", "cpu: x86_64", "cpu: x86_64"],
                           "precision": ["fp32", "bf16", "fp32", "fp32"],
                           "wall_seconds": [22_500.0, 60.0, 900.0, 1.0], "epochs": [120, 120, 120, 120],
                           "train_size": [45_000, 45_000, 1_000, 54_000]})
    # the CPU estimate: the first row only (the third and fourth have other training sizes)
    assert budget.estimate_seconds(resnet32, 2, schedule, 45_000, "cpu", stored, bf16=False) == pytest.approx(
        2 * 22_500.0 * cpu["resnet32"] / cpu["resnet14"])
    # the GPU estimate: the H200 row; bf16 rows do not count for an fp32 run
    assert budget.estimate_seconds(resnet32, 1, schedule, 45_000, "cuda", stored, bf16=True) == pytest.approx(
        60.0 * cuda["resnet32"] / cuda["resnet14"])
    assert budget.estimate_seconds(resnet32, 1, schedule, 45_000, "cuda", stored, bf16=False) == pytest.approx(
        120 * 45 * cuda["resnet32"])
    # a stored run of the network itself comes first
    own = pd.concat([stored, stored.iloc[:1].assign(model="resnet32", wall_seconds=50_000.0)])
    assert budget.estimate_seconds(resnet32, 1, schedule, 45_000, "cpu", own, bf16=False) == pytest.approx(50_000.0)


def test_describe_duration():
    assert [budget.describe_duration(s) for s in (30, 600, 72_000, float("inf"))] == [
        "about 30 s", "about 10 min", "about 20 h", "an unknown time"]


def test_a_chapter_over_its_budget_trains_nothing_and_says_what_it_would_cost(tmp_path):
    cells = training.table_cells(training.get_experiment("digits_fc"), runs=1)
    rows, note = training.ensure_results("digits_fc", cells, profile="paper", device="cpu", results_dir=tmp_path,
                                         budget_seconds=0.001, progress=False)
    assert rows.empty and not ResultStore(tmp_path).path("digits_fc").exists()
    assert note.startswith("not run here: 40 runs, about")  # the stage-1 runs are cells of the block
    assert "on this CPU" in note and "`losscorrection sweep digits_fc --with-figure --profile paper`" in note
    that = [training.Cell("forward_That", "symmetric", 0.2, 0)]  # needs a stage-1 run that is not asked for
    assert training.ensure_results("digits_fc", that, profile="paper", device="cpu", results_dir=tmp_path,
                                   budget_seconds=0.001)[1].startswith("not run here: 2 runs,")
    rows, note = training.ensure_results("digits_fc", cells[:2], profile="smoke", device="cpu",
                                         results_dir=tmp_path, budget_seconds=60, progress=False)
    assert len(rows) == 2 and note is None


def test_auto_precision_uses_bf16_where_it_pays():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training.auto_bf16("resnet14", cuda) and training.auto_bf16("imdb_embedding", cuda)
    assert not training.auto_bf16("mlp", cuda)
    assert training.auto_bf16("resnet32", cpu, cpu_bf16=True) and training.auto_bf16("imdb_lstm", cpu, cpu_bf16=True)
    assert not training.auto_bf16("resnet32", cpu, cpu_bf16=False)
    assert training.auto_bf16("mlp", cpu, cpu_bf16=True) and not training.auto_bf16("mlp", cpu, cpu_bf16=False)
    assert not training.auto_bf16("imdb_embedding", cpu, cpu_bf16=True)


def test_runtime_resolves_device_and_precision_once():
    embedding = training.Runtime.resolve("imdb_embedding", "cpu")
    assert embedding.device == CPU and not embedding.bf16 and embedding.precision == "fp32"
    assert training.Runtime.resolve("resnet14", "cpu").bf16 == training.auto_bf16("resnet14", CPU)
    assert training.Runtime.resolve("mlp", "cpu", "bf16").precision == "bf16"
    assert training.Runtime.resolve("resnet14", "cpu", "fp32").precision == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; known: auto, fp32, bf16"):
        training.Runtime.resolve("mlp", "cpu", "fp16")
    assert training.Runtime("cpu").describe() == store.device_description(CPU)


def test_runtime_lays_out_only_convolutional_networks_channels_last_and_sets_the_precision():
    runtime, plain = training.Runtime("cpu"), training.Runtime("cpu", channels_last=False)
    resnet = runtime.place(models.build_model("resnet14", 10))
    assert runtime.uses_channels_last(resnet) and resnet.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.uses_channels_last(resnet)
    assert not runtime.uses_channels_last(runtime.place(models.MLP(20, 4, hidden=(8,))))
    images = torch.randn(2, 3, 8, 8)
    assert runtime.images(images).is_contiguous(memory_format=torch.channels_last)
    flat = images.flatten(1)
    assert plain.images(images) is images and runtime.images(flat) is flat  # only image batches change layout
    ones = torch.ones(2, 2)
    with training.Runtime("cpu", bf16=True).autocast():
        assert torch.mm(ones, ones).dtype == torch.bfloat16
    with runtime.autocast():
        assert torch.mm(ones, ones).dtype == torch.float32


@pytest.mark.parametrize("override, label", [
    ({"lr": 0.1}, "smoke:lr=0.1"),
    ({"weight_decay_scope": "all"}, "smoke:weight_decay_scope=all"),
    ({"weight_decay_scope": "kernels"}, "smoke"),  # the profile's own scope: no override
])
def test_a_schedule_override_trains_with_it_and_is_stored_under_its_own_profile_label(tmp_path, monkeypatch,
                                                                                       override, label):
    schedules = []

    def recording_train_group(*args, **kwargs):
        schedules.append(args[6])  # train_group(stack, method, group_data, y_train, y_val, matrices, schedule, ...)
        return loop.train_group(*args, **kwargs)

    monkeypatch.setattr(runner, "train_group", recording_train_group)
    decayed = replace(training.get_experiment("digits_fc"), schedule=replace(training.ADAGRAD, weight_decay=1e-4))
    cells = [training.Cell("cross_entropy", "none", 0.0, 0)]
    rows = training.run_cells(decayed, cells, profile="smoke", device="cpu", results_dir=tmp_path,
                              progress=False, **override)
    assert list(rows["profile"]) == [label]
    (name, value), = override.items()
    assert [getattr(s, name) for s in schedules] == [value]
    again = training.run_cells(decayed, cells, profile="smoke", device="cpu", results_dir=tmp_path,
                               progress=False)
    if label == "smoke":
        assert again.empty and len(schedules) == 1  # the same cell: already stored
    else:
        assert list(again["profile"]) == ["smoke"]  # an override is not a run of the profile


def test_a_weight_decay_scope_without_weight_decay_is_refused(tmp_path):
    cells = [training.Cell("cross_entropy", "none", 0.0, 0)]
    with pytest.raises(ValueError, match="would change nothing: digits_fc trains without weight decay"):
        training.run_cells("digits_fc", cells, profile="smoke", device="cpu", results_dir=tmp_path,
                           weight_decay_scope="all", progress=False)


def test_module_runs_feed_convolutional_models_channels_last():
    torch.manual_seed(0)
    net = models.build_model("resnet14", 10)
    reference = copy.deepcopy(net).eval()
    stack = training.ModuleRuns([net], CPU_RUNTIME)
    assert stack.channels_last
    assert net.stem.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stack.forward(x, train=False)[0], reference(x[0]), rtol=1e-4, atol=1e-4)


def test_stacked_mlp_in_bf16_draws_the_fp32_masks_and_stays_close():
    modules = []
    for k in range(3):
        torch.manual_seed(k)
        modules.append(models.MLP(20, 4, hidden=(16, 16), dropout=0.5, bn_head=True))
    x = torch.rand(3, 32, 20)
    outputs = {}
    for bf16 in (False, True):
        stack = training.StackedMLP(copy.deepcopy(modules), [7, 8, 9], training.Runtime("cpu", bf16=bf16))
        train = stack.forward(x, train=True)
        outputs[bf16] = (train, stack.forward(x, train=False))
        assert train.dtype == torch.float32
    for fp32, bf16 in zip(outputs[False], outputs[True]):
        torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)  # bf16 keeps 8 bits of mantissa
        assert not torch.equal(bf16, fp32)  # the products did run in bf16


# ------------------------------------------------------------ concurrent processes


def test_a_group_another_process_is_training_is_refused(tmp_path, group_checkpoint_paths):
    cells = [training.Cell("cross_entropy", "none", 0.0, 0)]
    paths = group_checkpoint_paths
    training.run_cells("digits_fc", cells, profile="smoke", device="cpu", results_dir=tmp_path, progress=False)
    ResultStore(tmp_path).path("digits_fc").unlink()  # as if never stored: the same group would train again
    with locked(paths[0]):  # another process holds the group's lock
        with pytest.raises(training.GroupBusy, match="another process is training digits_fc cross_entropy"):
            training.run_cells("digits_fc", cells, profile="smoke", device="cpu", results_dir=tmp_path,
                               progress=False)
    assert not ResultStore(tmp_path).path("digits_fc").exists()


def test_a_group_stored_by_another_process_meanwhile_is_not_trained_again(tmp_path, monkeypatch):
    """Process B planned its runs before process A stored them: B takes the group's
    lock after A released it, finds the runs stored and trains nothing."""
    other = tmp_path / "other"
    cells = [training.Cell("cross_entropy", "none", 0.0, 0), training.Cell("forward_That", "none", 0.0, 0)]
    training.run_cells("digits_fc", cells[:1], profile="smoke", device="cpu", results_dir=other, progress=False)
    stored_by_a = ResultStore(other).load("digits_fc")
    T_hat = ResultStore(other).get_transition("digits_fc", "none", 0.0, 0, "smoke")
    original = runner._checkpoint_path
    trained = []

    def a_finishes_first(*args, **kwargs):
        if not trained:  # the stage-1 group: A stores it just before B locks it
            ResultStore(tmp_path).append(stored_by_a.to_dict("records"))
            ResultStore(tmp_path).put_transitions("digits_fc", [("none", 0.0, 0, "smoke", T_hat)])
        trained.append(args[2])  # the method of the group
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "_checkpoint_path", a_finishes_first)
    trained_by_b = []
    monkeypatch.setattr(runner, "train_group",
                        lambda *args, **kwargs: trained_by_b.append(args[1]) or loop.train_group(*args, **kwargs))
    rows = training.run_cells("digits_fc", cells, profile="smoke", device="cpu", results_dir=tmp_path,
                              progress=False)
    assert trained == ["cross_entropy", "forward_That"] and trained_by_b == ["forward_That"]
    assert list(rows["method"]) == ["forward_That"]  # B trained only what A had not stored
    frame = ResultStore(tmp_path).load("digits_fc")
    assert sorted(frame["method"]) == ["cross_entropy", "forward_That"]  # no duplicate stage-1 row
    assert rows["T_error"].iloc[0] == pytest.approx(
        estimation_error(T_hat, np.eye(10)))  # no noise: T is the identity


# ------------------------------------------------ the released code's recipe

RELEASED = training.experiments.RECIPES["released"]


def released_images():
    """:func:`tiny_images` prepared as the released recipe prepares them."""
    group, y_tr, y_va = tiny_images()
    mean = data.pixel_mean([group.x_train, group.x_val], scale=1.0)
    return replace(group, pixel_mean=mean, pixel_scale=1.0, augmentation="shift_flip"), y_tr, y_va


def test_batch_order_draws_a_fresh_permutation_per_pass_and_epochs_continue_the_pass():
    """Keras' ``ImageDataGenerator.flow``: passes over the n examples, each in a new
    permutation (batches 4, 4, 2 of 10 here), taken ``steps`` batches per epoch."""
    order = loop._BatchOrder([torch.Generator().manual_seed(5)], 10, 4, CPU)
    epochs = [list(order.epoch(4)) for _ in range(3)]  # 12 batches: 4 passes of 3
    assert [b.shape[1] for e in epochs for b in e] == [4, 4, 2] * 4
    reference = torch.Generator().manual_seed(5)
    expected = torch.cat([torch.randperm(10, generator=reference) for _ in range(4)])
    assert torch.equal(torch.cat([b[0] for e in epochs for b in e]), expected)
    one_pass = loop._BatchOrder([torch.Generator().manual_seed(5)], 10, 4, CPU)
    assert [torch.cat(list(one_pass.epoch(one_pass.batches_per_pass)), 1)[0].tolist() for _ in range(4)] == \
        [p.tolist() for p in expected.view(4, 10)]  # the default: one pass per epoch


def test_a_released_epoch_has_n_train_plus_n_val_over_batch_size_steps():
    """(48 training + 32 validation) // 20 = 4 steps per epoch (the released code's
    ``X_train.shape[0] // num_batch`` on all 50,000 images), drawn from passes of
    48 in batches of 20, 20, 8: the second epoch starts inside a pass."""
    group, y_tr, y_va = released_images()
    stack = training.ModuleRuns(resnets([3], architecture="released"), CPU_RUNTIME)
    sizes = []
    forward = stack.forward

    def recording(x, train, shared=False):
        if train:
            sizes.append(x.shape[1])
        return forward(x, train, shared)

    stack.forward = recording
    schedule = training.Schedule("sgd", 0.05, 3, batch_size=20, momentum=0.9, weight_decay=1e-4)
    training.train_group(stack, "cross_entropy", group, y_tr[None], y_va[None], None, schedule, [5],
                         recipe=RELEASED, progress=False)
    assert sizes == [20, 20, 8, 20] + [20, 8, 20, 20] + [8, 20, 20, 8]
    sizes.clear()
    training.train_group(stack, "cross_entropy", group, y_tr[None], y_va[None], None, schedule, [5], progress=False)
    assert sizes == [20, 20, 8] * 3
    sizes.clear()  # fewer examples than a batch: one step per epoch, the whole training split
    training.train_group(stack, "cross_entropy", group, y_tr[None], y_va[None], None,
                         replace(schedule, batch_size=128), [5], recipe=RELEASED, progress=False)
    assert sizes == [48] * 3


def test_kernel_penalty_is_each_runs_l2_penalty_on_its_kernels(digits):
    """λ Σ‖w‖² over the convolution and dense kernels of each run's own network
    (Keras' ``kernel_regularizer=l2(λ)``), whatever the batching."""
    seeds = [3, 4]

    def squares(modules):  # the multi-dimensional weights: kernels, not biases or batch-norm scales
        return np.array([sum(p.detach().double().pow(2).sum().item() for name, p in m.named_parameters()
                             if name.endswith("weight") and p.dim() > 1) for m in modules])

    nets = resnets(seeds, architecture="released")
    for stack in (training.ModuleRuns(resnets(seeds, architecture="released"), CPU_RUNTIME),
                  training.GroupedRuns(resnets(seeds, architecture="released"), CPU_RUNTIME),
                  training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME)):
        expected = squares(mlps(seeds) if isinstance(stack, training.StackedMLP) else nets)
        np.testing.assert_allclose(loop.kernel_penalty(stack, 1e-3).numpy(), 1e-3 * expected, rtol=1e-5)


def test_penalised_selection_adds_the_penalty_and_stores_the_data_loss(digits, monkeypatch):
    """With the released recipe the selected epoch minimises validation loss + λ‖w‖²
    (Keras' ``val_loss``); a validation loss falling slower than the kernels grow
    then selects an earlier epoch than the data loss alone, and the stored
    ``val_loss`` and history stay the data loss."""
    seeds = [7, 8]
    T, y_tr, y_va = noisy(digits, seeds, rate=0.2)
    scripted = [[1.0 - 0.001 * e] * 2 for e in range(4)]  # the data loss improves a little every epoch
    penalties = []

    def scripted_validation(stack, group, method, y_val, matrices, clipped=False):
        epoch = len(penalties) - 1
        return torch.tensor(scripted[epoch]), torch.full((2,), 50.0)

    def record_penalty(epoch, stack):  # λ Σ‖W‖² of each run, computed here from the stacked weights
        penalties.append([0.01 * sum(w[k].double().pow(2).sum().item() for w in stack.weights) for k in range(2)])

    monkeypatch.setattr(loop, "_validate", scripted_validation)
    schedule = replace(SCHEDULE, epochs=4, weight_decay=0.01)  # AdaGrad: λ only in the penalty
    outcomes = {}
    for recipe in (training.experiments.RECIPES["library"], RELEASED):
        penalties.clear()
        outcomes[recipe] = training.train_group(
            training.StackedMLP(mlps(seeds), seeds, CPU_RUNTIME), "cross_entropy", group_data(digits), y_tr, y_va,
            None, schedule, seeds, on_epoch=record_penalty, recipe=recipe, progress=False)
    criterion = np.array(scripted) + np.array(penalties)
    for k in range(2):
        plain, penalised = outcomes[training.experiments.RECIPES["library"]][k], outcomes[RELEASED][k]
        assert plain.selected_epoch == 4
        assert penalised.selected_epoch == int(np.argmin(criterion[:, k])) + 1 != 4
        assert penalised.val_loss == pytest.approx(scripted[penalised.selected_epoch - 1][k])
        assert penalised.val_history == pytest.approx([s[k] for s in scripted])


def test_released_milestones_follow_the_released_learning_rate_scheduler():
    """The released ``lr_scheduler``: 0.1, then 0.01 for ``epoch > 40``, 0.001 for
    ``epoch > 80`` (0-based epochs): 41 epochs at 0.1, one more than milestones 40, 80."""
    stack = training.ModuleRuns(resnets([0]), CPU_RUNTIME)
    rates = {}
    for offset in (0, RELEASED.milestone_offset):
        opt, lr_schedule = loop._optimizer(training.CIFAR10_SGD, stack, offset)
        rates[offset] = []
        for _ in range(120):
            rates[offset].append(opt.param_groups[0]["lr"])
            opt.step()
            lr_schedule.step()
    keras = [0.001 if epoch > 80 else 0.01 if epoch > 40 else 0.1 for epoch in range(120)]
    np.testing.assert_allclose(rates[RELEASED.milestone_offset], keras, rtol=1e-12)
    assert rates[0].count(0.1) == 40 and rates[RELEASED.milestone_offset].count(0.1) == 41


def test_a_released_recipe_group_resumes_inside_a_pass_and_ends_as_if_uninterrupted(tmp_path):
    group, y_tr, y_va = released_images()
    seeds = [3, 4]
    schedule = training.Schedule("sgd", 0.05, 4, batch_size=20, momentum=0.9, weight_decay=1e-2, milestones=(1, 2))

    def train(stack, recipe=RELEASED, **kwargs):
        return training.train_group(stack, "cross_entropy", group, torch.stack([y_tr] * 2), torch.stack([y_va] * 2),
                                    None, schedule, seeds, augment_seeds=[11, 12], recipe=recipe, progress=False,
                                    **kwargs)

    def make_stack():
        return training.GroupedRuns(resnets(seeds, architecture="released"), CPU_RUNTIME)

    straight_stack = make_stack()
    straight = train(straight_stack)

    checkpoint = tmp_path / "group.pt"
    with pytest.raises(Interrupted):
        train(make_stack(), checkpoint=checkpoint, checkpoint_seconds=0.0, on_epoch=interrupt_at(3))
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 2 and saved["order_pass"]["position"] == 8 % 3  # 8 batches: inside the third pass
    assert "best_criterion" in saved
    resumed_stack = make_stack()
    resumed = train(resumed_stack, checkpoint=checkpoint, checkpoint_seconds=0.0)
    for a, b in zip(straight, resumed):
        assert a.val_history == b.val_history
        assert (a.selected_epoch, a.test_accuracy, a.val_loss) == (b.selected_epoch, b.test_accuracy, b.val_loss)
    for a, b in zip(straight_stack.snapshot(), resumed_stack.snapshot()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    default = tmp_path / "default.pt"
    with pytest.raises(Interrupted):
        train(make_stack(), recipe=training.experiments.RECIPES["library"], checkpoint=default,
              checkpoint_seconds=0.0, on_epoch=interrupt_at(3))
    assert set(torch.load(default, weights_only=True)) == {  # the default recipe's checkpoints keep their keys
        "epoch", "history", "best_epoch", "stack", "best", "best_loss", "best_val_accuracy", "optimizer",
        "lr_schedule", "rng", "seconds", "description", "epochs"}
