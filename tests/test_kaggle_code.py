"""Code competitions against the stand-in Kaggle (tests/kaggle_server.py) with the real client: pushing the inference
notebook with an explicit accelerator, submitting a notebook's output, and transient failures (429 with Retry-After,
dropped connections, archives cut short or failing their CRC) waited out a bounded number of times."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from kaggle_server import (
    KERNELS,
    PADDY_FILES,
    PADDY_SLUG,
    PADDY_SUBMISSION,
    Dataset,
    KaggleStandIn,
    KernelRun,
    Scoring,
    kaggle_stand_in,
    zip_archive,
)
from typer.testing import CliRunner

from kagglekit.cli import app
from kagglekit.errors import KaggleError
from kagglekit.kaggle.downloads import download
from kagglekit.kaggle.kernels import INFERENCE_NOTEBOOK, NOTEBOOK, InferenceParameters, kernel_slug
from kagglekit.kaggle.retry import ATTEMPTS
from kagglekit.kaggle.submissions import list_submissions, sidecar_path, submit, submit_kernel

pytestmark = pytest.mark.usefixtures("loopback_only")  # no test reaches beyond this machine

USER = "kk-user"
KEY = "kk-secret-3b7e1d9c55"  # a fake key: it must never reach a file kagglekit writes
SLUG, DATA, VALID = PADDY_SLUG, PADDY_FILES, PADDY_SUBMISSION
INFERENCE = kernel_slug("paddy", "inference")


@pytest.fixture
def kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KaggleStandIn]:
    with kaggle_stand_in(
        tmp_path, monkeypatch, username=USER, key=KEY, competitions={SLUG: zip_archive(DATA)}
    ) as server:
        yield server


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait (time.sleep) the code under test asks for, recorded instead of slept."""
    asked: list[float] = []
    monkeypatch.setattr("time.sleep", lambda seconds: asked.append(float(seconds)))
    return asked


def _submission(root: Path) -> Path:
    path = root / "submissions" / "paddy" / "20250101-000000_sample.csv"
    path.parent.mkdir(parents=True)
    path.write_text(VALID)
    return path


def _no_credential_in(folder: Path) -> None:
    for path in (p for p in folder.rglob("*") if p.is_file()):
        assert KEY.encode() not in path.read_bytes(), path


# --- transient failures while downloading ---


def test_download_waits_out_a_429_with_its_retry_after(kaggle: KaggleStandIn, waits: list[float]) -> None:
    kaggle.throttled["DownloadDataFiles"], kaggle.retry_after = 2, "7"
    folder = download("paddy")
    assert (folder / "train.csv").read_text() == DATA["train.csv"]
    assert len(kaggle.calls("DownloadDataFiles")) == 3
    assert waits == [7.0, 7.0]  # the server's Retry-After, each time


def test_download_tries_again_after_a_dropped_connection(kaggle: KaggleStandIn, waits: list[float]) -> None:
    kaggle.dropped["DownloadDataFiles"] = 1
    assert (download("paddy") / "train.csv").is_file()
    assert len(kaggle.calls("DownloadDataFiles")) == 2
    assert waits == [2.0]  # no Retry-After: the first step of the back-off


def test_archive_cut_off_halfway_is_fetched_again(kaggle: KaggleStandIn, waits: list[float]) -> None:
    kaggle.cut_blobs = 1
    folder = download("paddy")
    assert (folder / "test_images" / "200002.jpg").read_bytes() == DATA["test_images/200002.jpg"]
    assert len([r for r in kaggle.requests if r.path.startswith("/blobs/")]) == 2


def test_download_gives_up_after_a_bounded_number_of_tries(kaggle: KaggleStandIn, waits: list[float]) -> None:
    kaggle.throttled["DownloadDataFiles"] = 100
    with pytest.raises(KaggleError, match="Kaggle answered 429"):
        download("paddy")
    assert len(kaggle.calls("DownloadDataFiles")) == ATTEMPTS
    assert len(waits) == ATTEMPTS - 1


def test_retry_after_is_capped(kaggle: KaggleStandIn, waits: list[float]) -> None:
    kaggle.throttled["DownloadDataFiles"], kaggle.retry_after = 1, "86400"
    download("paddy")
    assert waits == [300.0]


def _corrupt(archive: bytes, member: str) -> bytes:
    """Flip a byte inside `member`'s stored data: sizes and headers stay valid, its CRC no longer matches."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(member)
    header = 30 + len(info.filename.encode()) + len(info.extra)  # the local file header before the data
    data = bytearray(archive)
    data[info.header_offset + header + 10] ^= 0xFF
    return bytes(data)


def test_archive_failing_its_crc_is_deleted_and_fetched_again(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer
) -> None:
    good = zip_archive(DATA, method=zipfile.ZIP_STORED)
    kaggle.competitions[SLUG] = _corrupt(good, "test_images/200001.jpg")
    result = CliRunner().invoke(cli, ["download", "paddy"])
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]  # one line
    assert f"data/{SLUG}.zip is corrupt (Bad CRC-32 for file 'test_images/200001.jpg')" in line
    assert "run the download again" in line
    assert list((tmp_path / "data").iterdir()) == []  # no archive, no half-extracted folder to be reused
    kaggle.competitions[SLUG] = good
    assert (download("paddy") / "test_images" / "200001.jpg").read_bytes() == DATA["test_images/200001.jpg"]
    assert len(kaggle.calls("DownloadDataFiles")) == 2


@pytest.fixture
def cli() -> typer.Typer:
    return app


# --- transient failures while submitting and polling ---


def test_polling_waits_out_a_429(kaggle: KaggleStandIn, tmp_path: Path, waits: list[float]) -> None:
    kaggle.throttled["ListSubmissions"] = 1
    kaggle.scoring[SLUG] = Scoring(public_score="0.8", pending_polls=0)
    result = submit(_submission(tmp_path), None, "x", poll_interval=0)
    assert (result.record.status, result.record.public_score, result.unfollowed) == ("complete", "0.8", None)
    assert 7.0 in waits
    assert len(kaggle.submissions) == 1


def test_polling_that_gives_up_says_the_submission_was_made(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer, waits: list[float]
) -> None:
    file = _submission(tmp_path)
    kaggle.throttled["ListSubmissions"] = 100
    result = CliRunner().invoke(cli, ["submit", str(file), "-m", "x", "--poll-interval", "0"])
    assert result.exit_code == 0, result.output
    message = " ".join(result.output.split())
    assert "Submission 1001 was made, but Kaggle could not be asked for its score" in message
    assert "429" in message and "`kagglekit submissions paddy-disease-classification` shows it later" in message
    assert "do not submit it again" in message
    assert len(kaggle.calls("ListSubmissions")) == ATTEMPTS  # bounded
    assert len(kaggle.calls("CreateSubmission")) == 1
    assert json.loads(sidecar_path(file).read_text())["status"] == "pending"  # recorded, to be followed up


def test_a_429_when_submitting_is_waited_out_and_submits_once(
    kaggle: KaggleStandIn, tmp_path: Path, waits: list[float]
) -> None:
    kaggle.throttled["CreateSubmission"] = 1
    result = submit(_submission(tmp_path), None, "x", poll_interval=0)
    assert result.record.ref == 1001 and len(kaggle.submissions) == 1
    assert len(kaggle.calls("CreateSubmission")) == 2 and waits[0] == 7.0


def test_a_connection_dropped_while_submitting_is_not_retried(
    kaggle: KaggleStandIn, tmp_path: Path, waits: list[float]
) -> None:
    kaggle.dropped["CreateSubmission"] = 1
    with pytest.raises(KaggleError, match="may or may not have been submitted. Check `kagglekit submissions paddy`"):
        submit(_submission(tmp_path), None, "x", poll_interval=0)
    assert len(kaggle.calls("CreateSubmission")) == 1  # sent once: a second could submit twice


# --- the inference notebook ---


def _parameters(text: str) -> dict[str, str]:
    notebook = json.loads(text)
    [cell] = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)
    return {k: v for k, v in namespace.items() if k.isupper()}


def test_push_kernel_inference_sends_the_pack_notebook_on_a_named_gpu(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer
) -> None:
    for ref in (f"{USER}/kagglekit-wheels", f"{USER}/my-pack"):
        kaggle.datasets[ref] = Dataset({}, {})
    result = CliRunner().invoke(cli, ["kaggle", "push-kernel", "paddy", "--inference", "my-pack"])
    assert result.exit_code == 0, result.output
    assert f"kagglekit submit --kernel {USER}/{INFERENCE} -m MESSAGE" in " ".join(result.output.split())
    [push] = kaggle.pushes
    assert push["slug"] == f"{USER}/{INFERENCE}"
    assert (push["machineShape"], push["enableGpu"], push["enableTpu"]) == ("NvidiaTeslaT4", True, False)
    assert (push["enableInternet"], push["isPrivate"]) == (False, True)
    assert push["datasetDataSources"] == [f"{USER}/kagglekit-wheels", f"{USER}/my-pack"]
    assert push["competitionDataSources"] == [SLUG]
    sent = _parameters(push["text"])
    assert (sent["PACK_DATASET"], sent["WHEELS_DATASET"], sent["TIME_BUDGET_HOURS"]) == (
        f"{USER}/my-pack", f"{USER}/kagglekit-wheels", "",
    )  # fmt: skip
    folder = tmp_path / "runs" / "paddy" / "kernels" / INFERENCE
    assert json.loads((folder / "kernel-metadata.json").read_text())["code_file"] == INFERENCE_NOTEBOOK.name
    _no_credential_in(tmp_path / "runs")


@pytest.mark.parametrize(
    ("accelerator", "expected"),
    [("NvidiaL4", {"machineShape": "NvidiaL4", "enableGpu": True}), ("cpu", {"enableGpu": False})],
)
def test_push_kernel_accelerator(kaggle: KaggleStandIn, cli: typer.Typer, accelerator: str, expected: dict) -> None:
    kaggle.datasets[f"{USER}/kagglekit-wheels"] = Dataset({}, {})
    args = ["kaggle", "push-kernel", "paddy", "--recipe", "sample", "--accelerator", accelerator]
    assert CliRunner().invoke(cli, args).exit_code == 0
    [push] = kaggle.pushes
    assert {k: push.get(k) for k in expected} == expected
    if accelerator == "cpu":
        assert not push.get("machineShape")


def test_push_kernel_refuses_a_retired_accelerator(kaggle: KaggleStandIn, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["kaggle", "push-kernel", "paddy", "--accelerator", "NvidiaTeslaP100"])
    assert result.exit_code == 2
    assert "retired the NvidiaTeslaP100 accelerator; use --accelerator NvidiaTeslaT4" in result.output
    assert kaggle.pushes == []


def test_both_notebooks_install_kagglekit_the_same_way() -> None:
    import nbformat

    offline, inference = (nbformat.read(path, as_version=4) for path in (NOTEBOOK, INFERENCE_NOTEBOOK))
    [install] = [c.source for c in offline.cells if c.get("id") == "install"]
    assert [c.source for c in inference.cells if c.get("id") == "install"] == [install]
    [cell] = [c for c in inference.cells if "parameters" in c.metadata.get("tags", [])]
    assert cell.source == InferenceParameters().cell()
    nbformat.validate(inference)


@pytest.mark.parametrize("layout", ["datasets/{owner}/{slug}", "{slug}"])
@pytest.mark.parametrize("ref", ["{owner}/{slug}", "{slug}"])
def test_notebook_finds_an_attached_dataset_in_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, ref: str
) -> None:
    """The notebooks' own `dataset_dir` (it must work before kagglekit is installed), run as the notebook runs it."""
    import nbformat

    notebook = nbformat.read(INFERENCE_NOTEBOOK, as_version=4)
    folder = tmp_path / "input" / layout.format(owner=USER, slug="my-pack")
    folder.mkdir(parents=True)
    monkeypatch.setenv("KAGGLEKIT_INPUT_ROOT", str(tmp_path / "input"))
    monkeypatch.setenv("KAGGLEKIT_WHEELS_DATASET", "")  # nothing to install
    namespace: dict = {}
    for cell in notebook.cells[1:3]:  # the parameters and the install cell
        exec(cell.source, namespace)
    assert namespace["dataset_dir"](ref.format(owner=USER, slug="my-pack")) == folder
    with pytest.raises(FileNotFoundError, match="not attached"):
        namespace["dataset_dir"]("someone/other-pack")


# --- submitting a notebook to a code competition ---


def _pushed_inference_notebook(kaggle: KaggleStandIn, cli: typer.Typer, versions: int = 1) -> str:
    for ref in (f"{USER}/kagglekit-wheels", f"{USER}/my-pack"):
        kaggle.datasets[ref] = Dataset({}, {})
    for _ in range(versions):
        assert CliRunner().invoke(cli, ["kaggle", "push-kernel", "paddy", "--inference", "my-pack"]).exit_code == 0
    return f"{USER}/{INFERENCE}"


def test_submit_kernel_sends_a_code_submission_and_records_its_score(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer, waits: list[float]
) -> None:
    kernel = _pushed_inference_notebook(kaggle, cli)
    kaggle.kernel_runs[INFERENCE].statuses = ["COMPLETE"]
    kaggle.scoring[SLUG] = Scoring(public_score="0.97", pending_polls=1)
    result = CliRunner().invoke(cli, ["submit", "--kernel", kernel, "-m", "pack v1", "--poll-interval", "0"])
    assert result.exit_code == 0, result.output
    assert "Submission 1001 scored: public 0.97" in result.output
    [sent] = [r.json() for r in kaggle.calls("CreateCodeSubmission")]
    assert sent == {
        "competitionName": SLUG, "kernelOwner": USER, "kernelSlug": INFERENCE, "kernelVersion": 1,
        "fileName": "submission.csv", "submissionDescription": "pack v1",
    }  # fmt: skip
    assert kaggle.calls("GetKernel", KERNELS) and kaggle.calls("GetKernelSessionStatus", KERNELS)
    [record] = (tmp_path / "submissions" / "paddy").glob(f"*_kernel-{INFERENCE}-v1.kaggle.json")
    saved = json.loads(record.read_text())
    assert (saved["kernel"], saved["kernel_version"], saved["status"], saved["public_score"]) == (
        kernel, 1, "complete", "0.97",
    )  # fmt: skip
    listed = CliRunner().invoke(cli, ["submissions", "paddy"])
    assert any(f"kernel-{INFERENCE}-v1" in line and "0.97" in line for line in listed.output.splitlines())
    _no_credential_in(tmp_path / "submissions")


def test_submit_kernel_names_an_older_version_and_the_competition(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer
) -> None:
    kernel = _pushed_inference_notebook(kaggle, cli, versions=2)
    kaggle.kernel_runs[INFERENCE].statuses = ["RUNNING"]  # the latest version: not checked for an older one
    result = submit_kernel(kernel, "v1", competition="paddy", version=1, timeout=0)
    assert result.record.kernel_version == 1 and result.record.competition == SLUG
    assert kaggle.submissions[0].kernel_version == 1
    assert list_submissions("paddy", refresh=False)[0].kaggle.kernel == kernel


@pytest.mark.parametrize(
    ("run", "problem"),
    [
        (KernelRun(statuses=["RUNNING"]), "Version 1 of notebook kk-user/kagglekit-paddy-inference is running"),
        (KernelRun(statuses=["ERROR"], failure_message="CUDA out of memory"), "failed on Kaggle (CUDA out of memory)"),
    ],
)
def test_submit_kernel_refuses_a_version_that_has_not_finished(
    kaggle: KaggleStandIn, cli: typer.Typer, run: KernelRun, problem: str
) -> None:
    kernel = _pushed_inference_notebook(kaggle, cli)
    kaggle.kernel_runs[INFERENCE] = run
    with pytest.raises(KaggleError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        submit_kernel(kernel, "x", timeout=0)
    assert kaggle.calls("CreateCodeSubmission") == []


def test_submit_kernel_says_what_is_wrong(kaggle: KaggleStandIn, cli: typer.Typer) -> None:
    for args, problem in (
        (["--kernel", "no-owner", "-m", "x"], "name the notebook as OWNER/SLUG"),
        (["--kernel", f"{USER}/never-pushed", "-m", "x"], "Could not look up notebook kk-user/never-pushed"),
        (["--kernel", f"{USER}/x", "file.csv", "-m", "x"], "Give either a submission FILE or --kernel"),
    ):
        result = CliRunner().invoke(cli, ["submit", *args])
        assert result.exit_code == 2, result.output
        assert problem in " ".join(result.output.split())
    assert kaggle.calls("CreateCodeSubmission") == []
