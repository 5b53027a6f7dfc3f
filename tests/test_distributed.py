"""Data-parallel training with `accelerate launch`: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from kagglekit.train.distributed import distributed, is_main_process, main_process_alone, main_process_first, world_size

# Each rank gets different data and a different initialisation: identical final weights can only come from
# DDP broadcasting rank 0's weights and averaging gradients, not from two identical independent runs.
SCRIPT = """
import json, os, sys
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from safetensors.torch import save_file
from torch import nn

from kagglekit.train.distributed import distributed, is_main_process, main_process_alone, main_process_first, world_size

out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
with main_process_first():  # rank 0 writes the marker before the other rank looks for it
    if is_main_process():
        (out / "created-by-rank0").write_text("")
    saw_marker = (out / "created-by-rank0").is_file()

class CountBatches(Callback):
    def before_fit(self): self.n = 0
    def after_batch(self): self.n += self.training

torch.manual_seed(100 + rank)
x = torch.randn(64, 4)
data = list(zip(x, (x.sum(1) > 0).long()))
dls = DataLoaders(DataLoader(data, bs=8, shuffle=True, drop_last=True), DataLoader(data, bs=8), device="cpu")
model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
start = [p.detach().clone() for p in model.parameters()]
counter = CountBatches()
learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), cbs=counter)
with distributed(learn):
    learn.fit(2, 0.05)
assert type(learn.model) is nn.Sequential, "the DDP wrapper must be gone after the context"
save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
moved = any(not torch.equal(a, b) for a, b in zip(start, learn.model.parameters()))
train_batches, predicted = counter.n, None  # (get_preds runs before_fit too, resetting the counter)
if is_main_process():  # rank 1 is not predicting: fastai must not wait for it to gather predictions
    with main_process_alone():
        predicted = len(learn.get_preds()[0])
report = {"world_size": world_size(), "main": is_main_process(), "saw_marker": saw_marker,
          "train_batches": train_batches, "moved": moved, "predicted": predicted}
(out / f"rank{rank}.json").write_text(json.dumps(report))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_train_one_model(tmp_path):
    pytest.importorskip("accelerate", reason="accelerate is not installed (pip install accelerate)")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend for CPU process groups")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), str(script), str(tmp_path),
    ]  # fmt: skip
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # the CPU path (gloo), even on a machine with GPUs
        "OMP_NUM_THREADS": "1",
        "HF_HOME": str(tmp_path / "hf"),  # no user accelerate config can change the launch
        "HF_HUB_OFFLINE": "1",
    }
    # Its own session, so that a hang is ended with every process the launcher started, not just the launcher.
    with subprocess.Popen(
        launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=110)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            stdout, stderr = launcher.communicate()
            pytest.fail(f"two-process training did not finish within 110 s:\n{stderr[-4000:]}")
    assert launcher.returncode == 0, stdout[-3000:] + stderr[-6000:]

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert [r["main"] for r in reports] == [True, False]
    assert all(r["saw_marker"] and r["moved"] for r in reports)
    assert [r["train_batches"] for r in reports] == [8, 8]  # 2 epochs x (8 batches of 8 split over 2 ranks)
    assert [r["predicted"] for r in reports] == [64, None]  # all 64 validation rows, once, on rank 0 alone
    weights = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        if "running" not in name:  # BatchNorm statistics: per rank without SyncBatchNorm (CPU); rank 0 saves
            torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0, msg=name)


def test_without_a_launcher_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    learn = object()  # never touched, and neither accelerate nor fastai.distributed is needed
    with main_process_first(), distributed(learn) as same:
        assert same is learn
    assert world_size() == 1 and is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    with main_process_alone():
        assert world_size() == 1
    assert "WORLD_SIZE" not in os.environ
    monkeypatch.setenv("WORLD_SIZE", "2")
    with main_process_alone():
        assert world_size() == 1
    assert world_size() == 2
