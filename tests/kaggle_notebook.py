"""Running a kagglekit notebook here as Kaggle runs it: a batch session (`KAGGLE_KERNEL_RUN_TYPE=Batch`) with its
inputs under a folder standing for /kaggle/input and its outputs in one standing for /kaggle/working, kagglekit
installed by the notebook itself from the attached wheels (into its own folder, first on the path, so the test's
environment is never changed and the notebook imports the wheel's kagglekit), and internet off: every Python process
it starts loads a guard that logs and refuses any connection beyond this machine, and any name lookup but its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GUARD = '''"""Loaded by every Python process of a notebook test: any connection that leaves this machine, and any name
lookup but this machine's, is logged and fails."""
import os
import socket

_connect, _lookup = socket.socket.connect, socket.getaddrinfo
LOCAL = ("127.0.0.1", "::1", "localhost")


def _log(what):
    with open(os.environ["KK_NETWORK_LOG"], "a") as log:
        log.write(f"{what}\\n")


def _guarded(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
        _log(address)
        raise OSError(f"the notebook test allows no network, not {address}")
    return _connect(sock, address)


def _guarded_lookup(host, *args, **kwargs):
    if host is not None and host not in LOCAL:
        _log(f"lookup {host}")
        raise OSError(f"the notebook test allows no name lookup, not {host}")
    return _lookup(host, *args, **kwargs)


socket.socket.connect = _guarded
socket.getaddrinfo = _guarded_lookup
'''


def run_offline(
    notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str], timeout: int
) -> tuple[str, Path, Path]:
    """Execute `notebook` with its parameters overridden by `parameters` (KAGGLEKIT_<NAME> values), the inputs in
    `tmp_path/input` (the wheels dataset in `input/kagglekit-wheels`); return what it printed, its working folder and
    the folder kagglekit was installed into. Fails when anything tried to reach the network."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    working, site, guard = (tmp_path / name for name in ("working", "site", "guard"))
    for folder in (working, site, guard):
        folder.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    environment = {
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "KAGGLEKIT_INPUT_ROOT": str(tmp_path / "input"),
        "KAGGLEKIT_WORKING_DIR": str(working),
        "KAGGLEKIT_WHEELS_DATASET": "kagglekit-wheels",
        "KAGGLEKIT_PIP_ARGS": f"--target {site} --no-deps",
        "PYTHONPATH": os.pathsep.join([str(guard), str(site)]),
        "KK_NETWORK_LOG": str(tmp_path / "network.log"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_CONFIG_FILE": os.devnull,  # only the attached wheels, as on Kaggle: not this machine's pip settings
        **parameters,
    }
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    executed = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        executed, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(working)}}
    )
    client.execute()
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert f"from {site / 'kagglekit'}" in printed  # the wheel's kagglekit, not this checkout's
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    probe = "import socket; socket.create_connection(('192.0.2.1', 9), timeout=1)"  # TEST-NET-1: never routed
    monkeypatch.setenv("KK_NETWORK_LOG", str(tmp_path / "probe.log"))
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode
    assert "192.0.2.1" in (tmp_path / "probe.log").read_text()  # the guard was loaded in every process
    return printed, working, site
