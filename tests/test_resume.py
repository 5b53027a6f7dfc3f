"""A run killed mid-training continues when the same command is run again."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

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
        checkpoint = None
        while time.monotonic() < deadline and first.poll() is None:
            found = list((tmp_path / "runs").glob("paddy/*/members/b/checkpoint.json"))
            if found and json.loads(found[0].read_text())["epoch"] >= 1:
                checkpoint = found[0]
                break
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert checkpoint is not None, (tmp_path / "first.log").read_text()[-3000:]
    killed_at = json.loads(checkpoint.read_text())["epoch"]
    assert killed_at < 3, "the run finished member b before it could be killed"

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert "Resuming the unfinished run" in output
    assert "Reusing finished member a" in output
    assert f"Resuming b after epoch {killed_at + 1}" in output
    (run_json,) = (tmp_path / "runs" / "paddy").glob("*/run.json")  # the same run folder, continued
    record = json.loads(run_json.read_text())
    assert record["status"] == "finished"
    history = json.loads((run_json.parent / "members" / "b" / "member.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert len(list((tmp_path / "subs" / "paddy").glob("*.csv"))) == 1
