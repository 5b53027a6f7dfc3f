"""Gradient accumulation: the effective batch size really is the batch each optimizer step sees."""

import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.training import GradientAccumulation
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from torch import nn

from kagglekit.recipe import Member, RecipeError
from kagglekit.train import accumulation_callbacks


class StepSpy(Callback):
    """Records the gradient each time the optimizer really steps (after accumulation allowed it)."""

    order = GradientAccumulation.order + 1

    def before_fit(self):
        self.grads = []

    def before_step(self):
        self.grads.append([p.grad.detach().clone() for p in self.learn.model.parameters()])


def _fit(member: Member, x: torch.Tensor, y: torch.Tensor) -> tuple[list, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))  # no batch norm
    data = list(zip(x, y, strict=True))
    loaders = DataLoaders(
        DataLoader(data, bs=member.step_batch_size, shuffle=False, drop_last=True),
        DataLoader(data, bs=member.step_batch_size),
    )
    spy = StepSpy()
    learn = Learner(loaders, model, loss_func=nn.CrossEntropyLoss(), cbs=[spy])
    learn.fit(1, lr=0.05, cbs=accumulation_callbacks(member, len(data)))
    return spy.grads, model


def test_four_accumulated_steps_of_8_equal_one_step_of_32():
    torch.manual_seed(1)
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    accumulated, model_acc = _fit(Member(name="acc", arch="-", batch_size=32, accum=4), x, y)
    single, model_single = _fit(Member(name="one", arch="-", batch_size=32, accum=1), x, y)
    assert len(accumulated) == len(single) == 1  # the optimizer stepped once per effective batch
    for a, b in zip(accumulated[0], single[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(model_acc.parameters(), model_single.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_steps_once_per_effective_batch():
    x, y = torch.randn(128, 10), torch.randint(0, 3, (128,))
    grads, _ = _fit(Member(name="acc", arch="-", batch_size=32, accum=4), x, y)
    assert len(grads) == 4


def test_accumulation_is_counted_in_samples_not_batches():
    (callback,) = accumulation_callbacks(Member(name="m", arch="-", batch_size=64, accum=4), n_train=1000)
    assert callback.n_acc == 64  # fastai counts samples; n_acc = 4 would silently not accumulate
    assert accumulation_callbacks(Member(name="m", arch="-", batch_size=64, accum=1), n_train=1000) == []


def test_a_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(RecipeError, match="no optimizer step would ever run"):
        accumulation_callbacks(Member(name="m", arch="-", batch_size=64, accum=2), n_train=40)
