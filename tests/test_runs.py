"""Run folders: one process at a time trains into a run folder; a run whose process is gone is interrupted, and resumed."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from kagglekit.errors import DataError
from kagglekit.runs import LOCK, RunRecord, claim_run, run_status

KEY = "0123456789ab"


def _holder(tmp_path, seconds: float = 30) -> subprocess.Popen:
    """Another process that claims the run folder of configuration KEY and holds it for `seconds`."""
    code = textwrap.dedent(f"""
        import sys, time
        from kagglekit.runs import claim_run
        try:
            with claim_run({str(tmp_path / "runs")!r}, "paddy", "r", {KEY!r}) as folder:
                print(folder, flush=True)
                time.sleep({seconds})
        except Exception as error:
            print("refused:", error, flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_second_identical_run_is_refused_while_the_first_lives_then_resumes_it(tmp_path, caplog):
    holder = _holder(tmp_path)
    folder = holder.stdout.readline().strip()
    assert folder, "the holder could not claim a folder"
    try:
        owner = json.loads((tmp_path / "runs" / "paddy" / os.path.basename(folder) / LOCK).read_text())
        assert (owner["pid"], owner["host"]) == (holder.pid, socket.gethostname())
        assert run_status(folder) == "running"
        busy = pytest.raises(DataError, match=rf"in progress in {folder} \(pid {holder.pid} on .*--fresh")
        with busy, claim_run(tmp_path / "runs", "paddy", "r", KEY):
            pass
        with claim_run(tmp_path / "runs", "paddy", "r", KEY, fresh=True) as separate:  # --fresh: its own folder
            assert str(separate) != folder
            RunRecord(separate, config={}, config_key=KEY, status="finished").save()
    finally:
        holder.kill()
        holder.wait()
    assert run_status(folder) == "interrupted", "killed: its lock names a process that is gone"
    with caplog.at_level(logging.INFO), claim_run(tmp_path / "runs", "paddy", "r", KEY) as resumed:
        assert str(resumed) == folder
        assert json.loads((resumed / LOCK).read_text())["pid"] == os.getpid()
    assert (
        f"Marked {folder} as interrupted" in caplog.text and f"Resuming the unfinished run in {folder}" in caplog.text
    )
    assert not (resumed / LOCK).exists(), "the lock is released when the run ends"


def test_two_commands_started_at_once_never_share_a_folder(tmp_path):
    holders = [_holder(tmp_path, seconds=5) for _ in range(2)]
    lines = sorted(h.communicate(timeout=120)[0].strip() for h in holders)
    assert lines[1].startswith("refused: A run of this configuration is in progress"), lines
    assert lines[0].startswith(str(tmp_path / "runs" / "paddy")), lines


def test_a_finished_run_is_not_resumed_and_an_interrupted_step_says_so(tmp_path):
    with claim_run(tmp_path / "runs", "paddy", "r", KEY) as folder:
        record = RunRecord(folder, config={}, config_key=KEY)
        with pytest.raises(KeyboardInterrupt), record.step("train:a"):
            raise KeyboardInterrupt
    assert run_status(folder) == "interrupted in train:a"
    with claim_run(tmp_path / "runs", "paddy", "r", KEY) as again:
        assert again == folder
        record.status = "finished"
        record.save()
    with claim_run(tmp_path / "runs", "paddy", "r", KEY) as new:
        assert new != folder


def test_a_lock_from_another_machine_holds_while_touched_and_is_taken_over_when_not(tmp_path):
    """A shared folder, or an earlier Kaggle session of a notebook with persistent files: the pid cannot be asked."""
    folder = tmp_path / "runs" / "paddy" / "20260101-000000_r"
    folder.mkdir(parents=True)
    RunRecord(folder, config={}, config_key=KEY).save()  # status running
    lock = folder / LOCK
    lock.write_text(json.dumps({"pid": 1, "host": "another-machine", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(DataError, match="pid 1 on another-machine"), claim_run(tmp_path / "runs", "paddy", "r", KEY):
        pass
    stale = time.time() - 11 * 60
    os.utime(lock, (stale, stale))  # its holder stopped touching it ten minutes ago
    assert run_status(folder) == "interrupted"
    with claim_run(tmp_path / "runs", "paddy", "r", KEY) as resumed:
        assert resumed == folder and json.loads(lock.read_text())["host"] == socket.gethostname()


def test_the_holder_touches_its_lock(tmp_path, monkeypatch):
    import kagglekit.runs as runs

    monkeypatch.setattr(runs, "HEARTBEAT", 0.05)
    with claim_run(tmp_path / "runs", "paddy", "r", KEY) as folder:
        past = time.time() - 3600
        os.utime(folder / LOCK, (past, past))
        time.sleep(0.3)
        assert time.time() - (folder / LOCK).stat().st_mtime < 60
