"""Training mechanics: gradient accumulation (the effective batch size really is the batch each optimizer step
sees), the loss's task weights, and a member that learns."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.training import GradientAccumulation
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from PIL import Image
from spies import Watch
from torch import nn

from kagglekit.data import load_items, vocabularies
from kagglekit.data.splits import make_splits
from kagglekit.recipe import Member, RecipeError
from kagglekit.train import accumulation_callbacks, train_member
from kagglekit.train.heads import TaskLoss, place_heads


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


# --- inside train_member --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paddy_data(paddy, paddy_sample):
    items = load_items(paddy, paddy_sample.data_dir)
    return items.train, make_splits(items.train["id"], valid_pct=0.25, seed=0), vocabularies(paddy, items)


def test_train_member_accumulates_to_the_effective_batch(paddy, paddy_data, tmp_path):
    train, split, vocab = paddy_data
    member = Member(name="m", arch="resnet10t", size=32, epochs=2, batch_size=16, accum=2)
    watch = Watch()
    learn = train_member(member, paddy, train, split, vocab, tmp_path, num_workers=0, cbs=[watch])
    assert {shape[0] for shapes in watch.shapes.values() for shape in shapes} == {8}  # passes of 16 // 2 images
    batches, steps = sum(watch.batches.values()), sum(watch.steps.values())
    assert batches >= 8 and steps == batches // 2  # one optimizer step per 16 images
    assert learn.dls.train.bs == 8


def test_task_loss_weights_each_head():
    heads = place_heads([
        {"task": "label", "column": "label", "kind": "single", "vocab": ["a", "b", "c"], "weight": 1.0},
        {"task": "variety", "column": "variety", "kind": "single", "vocab": ["x", "y"], "weight": 0.25},
        {"task": "tags", "column": "tags", "kind": "multi", "vocab": ["p", "q"], "weight": 2.0},
    ])  # fmt: skip
    torch.manual_seed(0)
    output = torch.randn(5, 7)
    label, variety, tags = torch.randint(0, 3, (5,)), torch.randint(0, 2, (5,)), (torch.rand(5, 2) > 0.5).float()
    expected = (
        F.cross_entropy(output[:, :3], label)
        + 0.25 * F.cross_entropy(output[:, 3:5], variety)
        + 2.0 * F.binary_cross_entropy_with_logits(output[:, 5:], tags)
    )
    torch.testing.assert_close(TaskLoss(heads)(output, label, variety, tags), expected)


def _easy_items(folder: Path, per_class: int = 20) -> pd.DataFrame:
    """Three classes told apart by colour alone (red, green, blue noise), 32 px."""
    rng = np.random.default_rng(0)
    rows = []
    for label, channel in (("blast", 0), ("hispa", 1), ("normal", 2)):
        for n in range(per_class):
            pixels = rng.integers(0, 110, size=(32, 32, 3), dtype=np.uint8)
            pixels[..., channel] += 120
            path = folder / f"{label}-{n}.png"
            Image.fromarray(pixels).save(path)
            rows.append({"id": path.name, "path": str(path), "label": label})
    return pd.DataFrame(rows)


def test_a_member_learns_an_easy_task_from_few_batches_per_epoch(paddy, tmp_path):
    """3 classes, 45 training images: 2 optimizer steps per epoch, the regime where batch-norm statistics that lag
    the weights made the sample recipe predict one class. Chance is 1/3."""
    items = _easy_items(tmp_path)
    split = make_splits(items["id"], valid_pct=0.25, seed=0, stratify=items["label"])
    member = Member(name="m", arch="resnet10t", size=32, epochs=5, batch_size=16, lr=1e-2, aug="none")
    vocab = {"label": ["blast", "hispa", "normal"]}
    learn = train_member(member, paddy, items, split, vocab, tmp_path / "m", num_workers=0)
    accuracy = float(learn.validate()[1])
    assert accuracy >= 0.9, f"validation accuracy {accuracy:.2f} on colours alone"
