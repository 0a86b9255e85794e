"""training.fit: the plain loop for one network, checked against a loop written
out here, step by step, with the same random streams."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from losscorrection import losses, noise, training


def problem(n: int = 96, c: int = 3):
    """Noisy training labels that depend on the inputs, and validation labels
    that do not, so that the validation loss rises as the network fits."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * n, 5)).astype(np.float32)
    y = noise.corrupt((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1), noise.symmetric(c, 0.2), seed=1)
    y[n:] = rng.integers(0, c, size=n)
    train = TensorDataset(torch.tensor(x[:n]), torch.tensor(y[:n]))
    val = TensorDataset(torch.tensor(x[n:]), torch.tensor(y[n:]))
    return DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=40)


def network() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))


def reference_loop(model, loss_fn, train_loader, val_loader, optimizer, epochs):
    """The loop of the paper's model selection, written out: returns the model of
    the epoch with the lowest validation loss, and every epoch's validation loss."""
    best, best_state, history = float("inf"), None, []
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            per_example = [loss_fn(model(x), y).item() * len(y) for x, y in val_loader]
        history.append(sum(per_example) / len(val_loader.dataset))
        if history[-1] < best:
            best, best_state = history[-1], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, history


@pytest.mark.parametrize("loss_name", ["cross_entropy", "forward", "backward"])
def test_fit_is_the_written_out_loop_with_model_selection(loss_name):
    T = noise.symmetric(3, 0.2)
    make_loss = lambda: losses.make_loss(loss_name, **({} if loss_name == "cross_entropy" else {"T": T}))  # noqa: E731
    train_loader, val_loader = problem()
    torch.manual_seed(3)
    ours = network()
    fitted = training.fit(ours, make_loss(), train_loader, torch.optim.Adagrad(ours.parameters(), lr=0.05),
                          epochs=6, val_loader=val_loader)
    torch.manual_seed(3)
    theirs = network()
    expected, history = reference_loop(theirs, make_loss(), train_loader, val_loader,
                                       torch.optim.Adagrad(theirs.parameters(), lr=0.05), epochs=6)
    assert fitted is ours and not fitted.training
    assert int(np.argmin(history)) < 5, "the check needs a selected epoch before the last"
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(fitted.state_dict()[name], value, rtol=0, atol=0)


def test_without_validation_the_last_epoch_is_kept_and_the_scheduler_steps_each_epoch():
    train_loader, _ = problem()
    torch.manual_seed(0)
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2], gamma=0.1)
    training.fit(model, losses.make_loss("cross_entropy"), train_loader, optimizer, epochs=3,
                 lr_scheduler=scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    torch.manual_seed(0)
    again = network()
    reference = torch.optim.SGD(again.parameters(), lr=1e-2, momentum=0.9)
    for epoch in range(3):
        for group in reference.param_groups:
            group["lr"] = 1e-2 if epoch < 2 else 1e-3
        again.train()
        for x, y in train_loader:
            reference.zero_grad()
            losses.make_loss("cross_entropy")(again(x), y).backward()
            reference.step()
    for name, value in again.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_max_steps_stops_within_an_epoch():
    train_loader, val_loader = problem()  # 6 batches an epoch
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    training.fit(model, losses.make_loss("cross_entropy"), train_loader, optimizer, epochs=5,
                 val_loader=val_loader, max_steps=8)
    assert len(steps) == 8


def test_fit_refuses_no_epochs_or_no_steps():
    train_loader, _ = problem()
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        training.fit(model, losses.make_loss("cross_entropy"), train_loader, optimizer, epochs=0)
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        training.fit(model, losses.make_loss("cross_entropy"), train_loader, optimizer, epochs=1, max_steps=0)
