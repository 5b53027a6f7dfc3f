"""The learner on the GPUs Kaggle has: precision by compute capability, channels_last only where it helps, and an
opt-in torch.compile with a fallback. No GPU is needed: CUDA's answers are stood in for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.channelslast import ChannelsLast
from fastai.callback.fp16 import MixedPrecision
from torch import nn

from kagglekit.recipe import Member, RecipeError, parse_recipe
from kagglekit.train import Head, create_learner, make_dataloaders
from kagglekit.train.learner import apply_precision, has_batch_norm, precision_for

HEAD = Head("label", "label", "single", ("a", "b"), 1.0, 0)


@pytest.mark.parametrize(("requested", "capability", "chosen", "noted"), [
    ("auto", (7, 5), "fp16", False),  # T4: fp16 with a gradient scaler, never the emulated bf16
    ("auto", (7, 0), "fp16", False),  # V100
    ("auto", (6, 0), "fp16", False),  # P100
    ("auto", (6, 1), "fp32", False),  # GTX 10xx: fp16 runs at a fraction of fp32's speed
    ("auto", (8, 0), "bf16", False),  # A100
    ("auto", (9, 0), "bf16", False),  # H100
    ("bf16", (7, 5), "fp16", True),  # asked for bf16 where it is emulated
    ("bf16", (8, 6), "bf16", False),
    ("fp32", (8, 0), "fp32", False),
    ("fp16", (8, 0), "fp16", False),
    ("auto", None, "fp32", False),  # the CPU
    ("fp16", None, "fp32", True),
])  # fmt: skip
def test_precision_by_compute_capability(requested, capability, chosen, noted):
    precision, note = precision_for(requested, capability)
    assert precision == chosen and (note is not None) == noted


def _learner(tmp_path, member: Member):
    rows = []
    for i in range(8):
        path = tmp_path / f"image{i}.32x32.npy"
        np.save(path, np.full((32, 32, 3), i * 30, np.uint8))
        rows.append({"id": str(i), "path": str(path), "label": "ab"[i % 2]})
    dls = make_dataloaders(pd.DataFrame(rows), pd.Series([False] * 6 + [True] * 2), [HEAD], member, num_workers=0)
    return create_learner(dls, member, [HEAD])


@pytest.fixture
def gpu(monkeypatch):
    """`gpu(capability)`: from then on CUDA answers as a GPU of that capability (the model stays on the CPU)."""

    def pretend(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)

    return pretend


def _callbacks(learn) -> dict[type, object]:
    return {type(cb): cb for cb in learn.cbs}


def test_t4_trains_in_fp16_with_a_scaler_and_an_a100_in_bf16(tmp_path, gpu):
    t4, a100 = (_learner(tmp_path, Member(name="m", arch="resnet10t", size=32, batch_size=2)) for _ in range(2))
    gpu((7, 5))
    notes = apply_precision(t4, Member(name="m", arch="resnet10t"))
    assert _callbacks(t4)[MixedPrecision].amp_mode.value == "fp16"
    assert "fp16 on compute capability 7.5" in notes[0]
    gpu((8, 0))
    apply_precision(a100, Member(name="m", arch="resnet10t"))
    assert _callbacks(a100)[MixedPrecision].amp_mode.value == "bf16"


def test_channels_last_only_for_batch_norm_cnns(tmp_path, gpu):
    resnet = _learner(tmp_path, Member(name="m", arch="resnet10t", size=32, batch_size=2))
    convnext = _learner(tmp_path, Member(name="c", arch="convnext_atto", size=32, batch_size=2))
    fp32 = _learner(tmp_path, Member(name="f", arch="resnet10t", size=32, batch_size=2))
    gpu((8, 0))
    assert has_batch_norm(resnet.model)
    apply_precision(resnet, Member(name="m", arch="resnet10t"))
    assert ChannelsLast in _callbacks(resnet)

    assert not has_batch_norm(convnext.model)  # layer norm: channels_last gains nothing
    apply_precision(convnext, Member(name="c", arch="convnext_atto"))
    assert ChannelsLast not in _callbacks(convnext)

    apply_precision(fp32, Member(name="f", arch="resnet10t", precision="fp32", channels_last=True))
    assert ChannelsLast in _callbacks(fp32) and MixedPrecision not in _callbacks(fp32)  # no fp16 sneaks in


def test_on_the_cpu_precision_and_channels_last_are_ignored_with_a_note(tmp_path):
    learn = _learner(tmp_path, Member(name="m", arch="resnet10t", size=32, batch_size=2))
    notes = apply_precision(learn, Member(name="m", arch="resnet10t", precision="bf16", channels_last=True))
    assert not ({MixedPrecision, ChannelsLast} & set(_callbacks(learn)))
    assert any("bf16 ignored on the CPU" in n for n in notes) and any("channels_last ignored" in n for n in notes)


def test_compile_falls_back_to_the_plain_model_with_a_note(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        self._compiled_call_impl = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("inductor: no C++ compiler"))

    monkeypatch.setattr(nn.Module, "compile", broken)
    learn = _learner(tmp_path, Member(name="m", arch="resnet10t", size=32, batch_size=2))
    notes = apply_precision(learn, Member(name="m", arch="resnet10t", compile=True))
    assert notes == ["m: torch.compile failed (inductor: no C++ compiler); trained without compiling"]
    assert learn.model._compiled_call_impl is None
    learn.fit(1)  # trains uncompiled


def test_compile_compiles_in_place_keeping_weight_names(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    learn = _learner(tmp_path, Member(name="m", arch="resnet10t", size=32, batch_size=2))
    names = list(learn.model.state_dict())
    assert apply_precision(learn, Member(name="m", arch="resnet10t", compile=True)) == [
        "m: compiled with torch.compile"
    ]
    assert compiled == [learn.model] and list(learn.model.state_dict()) == names
    assert not apply_precision(_learner(tmp_path, Member(name="n", arch="resnet10t", size=32, batch_size=2)),
                               Member(name="n", arch="resnet10t"))  # fmt: skip
    assert len(compiled) == 1  # only when asked


def test_compile_is_a_boolean_member_setting():
    recipe = parse_recipe({"members": [{"name": "m", "arch": "resnet18", "compile": True}]}, "r")
    assert recipe.members[0].compile is True
    with pytest.raises(RecipeError, match="compile must be true or false"):
        parse_recipe({"members": [{"name": "m", "arch": "resnet18", "compile": "yes"}]}, "r")
