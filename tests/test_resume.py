"""A member killed mid-training continues exactly where it stopped; a run killed mid-training continues when the same
command is run again; checkpoints that cannot be resumed are set aside with a note."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from spies import KillAfter, Killed, Watch

from kagglekit.data import load_items, vocabularies
from kagglekit.data.splits import make_splits
from kagglekit.recipe import Member
from kagglekit.train import checkpoint as checkpoint_module
from kagglekit.train import train_member
from kagglekit.train.checkpoint import CHECKPOINT

# Two stages (phases: stage 0; stage 1 head-only; stage 1), with every state a checkpoint must carry: optimizer,
# the weights' moving average, mixing draws (numpy), augmentation (torch, Python), loader shuffles, kept epochs.
MEMBER = Member(name="m", arch="resnet10t", batch_size=16, lr=5e-3, aug="flip", ema=0.9, mixup=0.4, cutmix=1.0,
                mix_off_epochs=1, average_checkpoints=2,
                stages=({"size": 32, "epochs": 2}, {"size": [40, 32], "epochs": 2}))  # fmt: skip


@pytest.fixture(scope="module")
def data(paddy, paddy_sample):
    items = load_items(paddy, paddy_sample.data_dir)
    return items.train, make_splits(items.train["id"], valid_pct=0.25, seed=0), vocabularies(paddy, items)


def _train(paddy, data, folder, member=MEMBER, cbs=()):
    train, split, vocab = data
    return train_member(member, paddy, train, split, vocab, folder, seed=3, num_workers=0, cbs=cbs)


@pytest.fixture(scope="module")
def uninterrupted(paddy, data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    watch = Watch()
    _train(paddy, data, folder, cbs=[watch])
    return watch, folder


def _assert_same_weights(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{what}: {key} differs")


@pytest.mark.parametrize(
    "phase, epoch",
    [(0, 0), (0, 1), (1, 0)],  # mid-phase; end of a stage (new loaders next); end of a head re-fit (same loaders)
)
def test_a_killed_member_resumes_exactly_where_it_stopped(paddy, data, uninterrupted, tmp_path, phase, epoch):
    reference, reference_folder = uninterrupted
    with pytest.raises(Killed):
        _train(paddy, data, tmp_path, cbs=[KillAfter(phase, epoch)])
    assert (tmp_path / CHECKPOINT).is_file() and not (tmp_path / "model.safetensors").exists()

    resumed = Watch()
    _train(paddy, data, tmp_path, cbs=[resumed])
    done = [key for key in reference.batches if key <= (phase, epoch)]
    assert not any(resumed.batches[key] for key in done), "epochs finished before the kill were trained again"
    assert set(resumed.weights) == set(reference.weights) - set(done)
    for key, weights in resumed.weights.items():  # every epoch after the kill, the first one included
        _assert_same_weights(weights, reference.weights[key], f"raw weights after phase/epoch {key}")
    final, expected = load_file(tmp_path / "model.safetensors"), load_file(reference_folder / "model.safetensors")
    _assert_same_weights(final, expected, "saved weights (moving average, epochs averaged)")
    saved, original = (json.loads((f / "member.json").read_text()) for f in (tmp_path, reference_folder))
    assert [h["epoch"] for h in saved["history"]] == [h["epoch"] for h in original["history"]] == [0, 1, 0, 0, 1]
    for row, expected_row in zip(saved["history"], original["history"], strict=True):
        row.pop("train_loss"), expected_row.pop("train_loss")  # fastai's running mean, restarted by each fit
        assert row == pytest.approx(expected_row, rel=1e-4)
    assert saved["averaged"]["epochs"] == original["averaged"]["epochs"]


def test_a_checkpoint_write_cut_short_leaves_the_previous_one(paddy, data, tmp_path, monkeypatch):
    member = Member(name="m", arch="resnet10t", size=32, epochs=3, batch_size=16)
    with pytest.raises(Killed):
        _train(paddy, data, tmp_path, member, cbs=[KillAfter(0, 0)])
    before = (tmp_path / CHECKPOINT).read_bytes()
    save = checkpoint_module._save

    def torn(state, path):  # the process dies half-way through writing
        save(state, path)
        path.write_bytes(path.read_bytes()[: len(before) // 2])
        raise Killed("killed while writing the checkpoint")

    monkeypatch.setattr(checkpoint_module, "_save", torn)
    with pytest.raises(Killed):
        _train(paddy, data, tmp_path, member)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    monkeypatch.undo()
    watch = Watch()
    _train(paddy, data, tmp_path, member, cbs=[watch])
    assert sorted(watch.weights) == [(0, 1), (0, 2)]  # resumed after the first epoch


def test_an_unreadable_checkpoint_restarts_the_member_with_a_note(paddy, data, tmp_path):
    member = Member(name="m", arch="resnet10t", size=32, epochs=2, batch_size=16)
    (tmp_path / CHECKPOINT).write_bytes(b"PK\x03\x04 torn")
    watch = Watch()
    _train(paddy, data, tmp_path, member, cbs=[watch])
    assert sorted(watch.weights) == [(0, 0), (0, 1)]
    notes = json.loads((tmp_path / "member.json").read_text())["notes"]
    assert any("could not be read" in n and "checkpoint-unreadable.pth" in n for n in notes), notes
    assert (tmp_path / "checkpoint-unreadable.pth").read_bytes() == b"PK\x03\x04 torn"


def test_a_checkpoint_of_another_configuration_is_not_resumed(paddy, data, tmp_path, caplog):
    first = Member(name="m", arch="resnet10t", size=32, epochs=3, batch_size=16, lr=5e-3)
    with pytest.raises(Killed):
        _train(paddy, data, tmp_path, first, cbs=[KillAfter(0, 1)])
    watch = Watch()
    second = Member(name="m", arch="resnet10t", size=32, epochs=3, batch_size=16, lr=1e-2)
    _train(paddy, data, tmp_path, second, cbs=[watch])
    assert sorted(watch.weights) == [(0, 0), (0, 1), (0, 2)], "trained from the first epoch"
    notes = json.loads((tmp_path / "member.json").read_text())["notes"]
    assert any("another configuration (lr 0.005 -> 0.01)" in n for n in notes), notes
    assert "another configuration (lr 0.005 -> 0.01)" in caplog.text
    assert (tmp_path / "checkpoint-other-config.pth").is_file()


RECIPE = """
seed = 5
tta = 0
[defaults]
arch = "resnet10t"
size = 32
batch_size = 16
[[members]]
name = "a"
epochs = 1
[[members]]
name = "b"
epochs = 4
"""


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(paddy_sample, tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    command = [
        sys.executable, "-m", "kagglekit", "run", "paddy", "--data", str(paddy_sample.data_dir),
        "--recipe", str(tmp_path / "r.toml"), "--runs", str(tmp_path / "runs"), "--submissions", str(tmp_path / "subs"),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "300"}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 400
        killed_at = None
        while time.monotonic() < deadline and first.poll() is None:
            found = list((tmp_path / "runs").glob(f"paddy/*/members/b/{CHECKPOINT}"))
            if found and (killed_at := torch.load(found[0], weights_only=True)["epoch"]) >= 1:
                break
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert killed_at is not None, (tmp_path / "first.log").read_text()[-3000:]
    assert killed_at < 3, "the run finished member b before it could be killed"

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert "Resuming the unfinished run" in output
    assert "Reusing finished member a" in output
    assert f"Resuming b after epoch {killed_at + 1}" in output
    trained = [n for n in range(1, 5) if f"b epoch {n}/4:" in output]
    assert trained == list(range(killed_at + 2, 5)), "only the epochs after the kill are trained again"
    (run_json,) = (tmp_path / "runs" / "paddy").glob("*/run.json")  # the same run folder, continued
    record = json.loads(run_json.read_text())
    assert record["status"] == "finished"
    history = json.loads((run_json.parent / "members" / "b" / "member.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert len(list((tmp_path / "subs" / "paddy").glob("*.csv"))) == 1
