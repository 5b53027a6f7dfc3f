"""kagglekit against Kaggle, with the real `kaggle` client talking to the stand-in of tests/kaggle_server.py."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import sys
import types
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
from kaggle_server import (
    PADDY_FILES,
    PADDY_SLUG,
    PADDY_SUBMISSION,
    RULES_MESSAGE,
    KaggleStandIn,
    Scoring,
    kaggle_stand_in,
    zip_archive,
)
from typer.testing import CliRunner

from kagglekit.cli import app
from kagglekit.data import locate_data
from kagglekit.errors import CredentialsError, KaggleError
from kagglekit.kaggle.auth import find_credentials
from kagglekit.kaggle.downloads import MANIFEST, download
from kagglekit.kaggle.submissions import SubmissionRefused, sidecar_path, submit
from kagglekit.kaggle.submissions import list_submissions as submissions
from kagglekit.registry import get_competition

pytestmark = pytest.mark.usefixtures("loopback_only")  # no test reaches beyond this machine

USER = "kk-user"
KEY = "kk-secret-5f3a9c0e71"  # a fake key: the tests check it never leaves the HTTP Authorization header
TOKEN = "kk-token-77d1e2"
SLUG, DATA, VALID = PADDY_SLUG, PADDY_FILES, PADDY_SUBMISSION
INVALID = "image_id,label\n200001.jpg,rice\n"


@pytest.fixture
def kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KaggleStandIn]:
    """The stand-in Kaggle, with the paddy data; HOME, the working folder and the environment are the test's own,
    with the stand-in's credentials in KAGGLE_USERNAME/KAGGLE_KEY."""
    with kaggle_stand_in(
        tmp_path, monkeypatch, username=USER, key=KEY, token=TOKEN, competitions={SLUG: zip_archive(DATA)}
    ) as server:
        yield server


@pytest.fixture
def cli() -> typer.Typer:
    """The `kagglekit` command line."""
    return app


def _auth_headers(server: KaggleStandIn) -> set[str]:
    return {r.headers["Authorization"] for r in server.requests if r.path.startswith("/api/v1/")}


def _basic(username: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{key}".encode()).decode()


def _without_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")


def _write_kaggle_json(folder: Path, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kaggle.json"
    path.write_text(json.dumps({"username": USER, "key": KEY}))
    path.chmod(mode)
    return path


# --- credentials ---


def test_credentials_from_environment(kaggle: KaggleStandIn) -> None:
    credentials = find_credentials()
    assert credentials.source == "environment variables KAGGLE_USERNAME and KAGGLE_KEY"
    assert (credentials.username, credentials.key) == (USER, KEY)
    assert KEY not in repr(credentials)
    download("paddy")
    assert _auth_headers(kaggle) == {_basic(USER, KEY)}


@pytest.mark.parametrize("where", ["home", "config_dir", "xdg"])
def test_credentials_from_kaggle_json(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    _without_env_credentials(monkeypatch)
    home = tmp_path / "home"
    if where == "config_dir":
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "elsewhere"))
    folder = {"home": home / ".kaggle", "config_dir": tmp_path / "elsewhere", "xdg": home / ".config" / "kaggle"}
    path = _write_kaggle_json(folder[where])
    assert find_credentials().source == str(path)
    download("paddy")
    assert _auth_headers(kaggle) == {_basic(USER, KEY)}


def test_environment_overrides_kaggle_json(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    path = _write_kaggle_json(tmp_path / "home" / ".kaggle")
    path.write_text(json.dumps({"username": USER, "key": "an-old-key"}))
    credentials = find_credentials()
    assert credentials.key == KEY
    assert credentials.source == f"{path} and environment variable(s) KAGGLE_USERNAME, KAGGLE_KEY"


@pytest.mark.parametrize("where", ["env", "file"])
def test_access_token(kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str) -> None:
    _without_env_credentials(monkeypatch)
    if where == "env":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    else:
        (tmp_path / "home" / ".kaggle").mkdir()
        (tmp_path / "home" / ".kaggle" / "access_token").write_text(TOKEN + "\n")
    assert find_credentials().token == TOKEN
    download("paddy")
    assert _auth_headers(kaggle) == {f"Bearer {TOKEN}"}


def _oauth_login(home: Path, expires: datetime) -> None:
    """What `kaggle auth login` leaves behind."""
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "credentials.json").write_text(
        json.dumps({
            "refresh_token": "kk-refresh", "access_token": TOKEN, "username": USER,
            "access_token_expiration": expires.isoformat(),
        })
    )  # fmt: skip


def test_oauth_login(kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _without_env_credentials(monkeypatch)
    _oauth_login(tmp_path / "home", datetime.now(timezone.utc) + timedelta(hours=6))
    assert "kaggle auth login" in find_credentials().source
    download("paddy")
    assert _auth_headers(kaggle) == {f"Bearer {TOKEN}"}


def test_oauth_login_that_kaggle_no_longer_accepts(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_env_credentials(monkeypatch)
    _oauth_login(tmp_path / "home", datetime.now(timezone.utc) - timedelta(days=1))  # expired: refresh, refused
    with pytest.raises(CredentialsError, match="run `kaggle auth login` again"):
        download("paddy")


def _notebook(monkeypatch: pytest.MonkeyPatch, secrets: dict[str, str]) -> None:
    """A Kaggle notebook: its run-type variable, and its secrets module serving `secrets`."""

    class UserSecretsClient:
        def get_secret(self, label: str) -> str:
            if label not in secrets:
                raise ValueError(f"No user secrets exist for kernel id 1 and label {label}")
            return secrets[label]

    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=UserSecretsClient))


def test_notebook_secrets(kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_env_credentials(monkeypatch)
    _notebook(monkeypatch, {"KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY})
    assert find_credentials().source == "Kaggle notebook secrets"
    download("paddy")
    assert _auth_headers(kaggle) == {_basic(USER, KEY)}


def test_missing_credentials_say_what_to_do(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cli: typer.Typer
) -> None:
    _without_env_credentials(monkeypatch)
    _notebook(monkeypatch, {})  # in a notebook without the secrets attached
    result = CliRunner().invoke(cli, ["download", "paddy"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    for advice in (
        f"save the downloaded kaggle.json as {tmp_path}/home/.config/kaggle/kaggle.json",
        "chmod 600",
        "KAGGLE_USERNAME and KAGGLE_KEY",
        "KAGGLE_API_TOKEN",
        "https://www.kaggle.com/settings/api",
        "Add-ons → Secrets",
    ):
        assert advice in message
    assert kaggle.requests == []


@pytest.mark.parametrize(
    ("content", "problem"), [('{"username": "kk-user"}', "lacks a username and key"), ("{", "is not valid JSON")]
)
def test_broken_kaggle_json_is_named(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, problem: str
) -> None:
    _without_env_credentials(monkeypatch)
    path = _write_kaggle_json(tmp_path / "home" / ".kaggle")
    path.write_text(content)
    with pytest.raises(CredentialsError, match=f"{path} {problem}"):
        find_credentials()


def test_client_that_cannot_be_imported(kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", None)  # as if kaggle were not installed
    with pytest.raises(KaggleError, match="pip install kaggle"):
        download("paddy")


def test_world_readable_kaggle_json_warns(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _without_env_credentials(monkeypatch)
    path = _write_kaggle_json(tmp_path / "home" / ".kaggle", mode=0o644)
    with caplog.at_level(logging.WARNING):
        find_credentials()
    assert f"chmod 600 {path}" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        find_credentials()
    assert caplog.text == ""


def test_key_never_written_or_shown(
    kaggle: KaggleStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cli: typer.Typer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every command, including its failures, with the key in the environment: the key reaches Kaggle only."""
    _run_record(tmp_path, _submission_file(tmp_path, VALID))
    kaggle.competitions["other-competition"] = zip_archive(DATA)
    kaggle.unaccepted.add("other-competition")
    runner = CliRunner()
    outputs = []
    with caplog.at_level(logging.DEBUG):
        for args in (
            ["download", "paddy"],
            ["download", "other-competition"],  # 403
            ["submit", "submissions/paddy/20250101-000000_sample.csv", "-m", "first", "--poll-interval", "0"],
            ["submissions", "paddy"],
        ):
            outputs.append(runner.invoke(cli, args).output)
        monkeypatch.setenv("KAGGLE_KEY", KEY + "-wrong")
        outputs.append(runner.invoke(cli, ["download", "other-competition"]).output)  # 401
    assert "Kaggle rejected the credentials" in outputs[-1]
    assert _basic(USER, KEY) in _auth_headers(kaggle)  # the key was used...
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 5
    for text in [*outputs, caplog.text, *written]:  # ...and is nowhere else
        assert KEY not in text


# --- download ---


def test_download_extracts_and_writes_manifest(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    kaggle.competitions[SLUG] = zip_archive(DATA, links={"test_images/first.jpg": "200001.jpg"})
    result = CliRunner().invoke(cli, ["download", "paddy", "--dest", "kaggle-data"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "kaggle-data" / SLUG
    assert f"Competition files: {Path('kaggle-data') / SLUG}" in result.output
    for name, content in DATA.items():
        assert (folder / name).read_bytes() == (content.encode() if isinstance(content, str) else content)
    assert os.readlink(folder / "test_images" / "first.jpg") == "200001.jpg"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["competition"] == SLUG
    assert manifest["extracted"]
    assert manifest["files"] == {name: len(content) for name, content in sorted(DATA.items())}
    assert sorted(p.name for p in (tmp_path / "kaggle-data").iterdir()) == [SLUG]  # archive and temp folder gone
    assert locate_data(get_competition("paddy"), tmp_path / "kaggle-data") == folder
    assert [r.json() for r in kaggle.calls("DownloadDataFiles")] == [{"competitionName": SLUG}]


def test_download_skips_complete_data_and_restores_missing_files(kaggle: KaggleStandIn) -> None:
    folder = download("paddy")
    served = len(kaggle.requests)
    assert download("paddy") == folder
    assert len(kaggle.requests) == served  # complete: Kaggle was not asked
    (folder / "test_images" / "200002.jpg").unlink()
    download("paddy")
    assert (folder / "test_images" / "200002.jpg").is_file()
    assert len(kaggle.calls("DownloadDataFiles")) == 2


def test_download_recovers_from_partial_archive(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    archive = kaggle.competitions[SLUG]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{SLUG}.zip").write_bytes(archive[: len(archive) // 2])  # a download that was cut off
    folder = download("paddy")
    assert (folder / "train.csv").read_text() == DATA["train.csv"]
    assert not (tmp_path / "data" / f"{SLUG}.zip").exists()


def test_download_redoes_interrupted_extraction(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / f".{SLUG}.extract-x1y2" / "train_images").mkdir(parents=True)  # killed while extracting
    (data / f"{SLUG}.zip").write_bytes(kaggle.competitions[SLUG])  # its archive, complete
    folder = download("paddy")
    assert sorted(p.name for p in data.iterdir()) == [SLUG]
    assert json.loads((folder / MANIFEST).read_text())["files"]["train.csv"] == len(DATA["train.csv"])


def test_download_of_competition_with_unaccepted_rules(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    kaggle.unaccepted.add(SLUG)
    with pytest.raises(KaggleError) as error:
        download("paddy")
    assert f"https://www.kaggle.com/competitions/{SLUG}/rules" in str(error.value)
    assert RULES_MESSAGE in str(error.value)
    assert not (tmp_path / "data" / SLUG).exists()


def test_download_of_unknown_competition(kaggle: KaggleStandIn) -> None:
    with pytest.raises(KaggleError, match="Kaggle has no competition 'no-such-competition'"):
        download("no-such-competition")


@pytest.mark.parametrize(
    ("files", "links", "named"),
    [
        ({"../evil.txt": "x"}, {}, "../evil.txt ('..' in the path)"),
        ({"train_images/..\\..\\evil.txt": "x"}, {}, "'..' in the path"),
        ({"/tmp/evil.txt": "x"}, {}, "/tmp/evil.txt (absolute path)"),
        ({}, {"train_images/escape": "../../outside"}, "train_images/escape (symlink to ../../outside"),
        ({}, {"passwd": "/etc/passwd"}, "passwd (symlink to /etc/passwd"),
    ],
)
def test_unsafe_archive_is_not_extracted(
    kaggle: KaggleStandIn, tmp_path: Path, files: dict[str, str], links: dict[str, str], named: str
) -> None:
    kaggle.competitions[SLUG] = zip_archive({**DATA, **files}, links)
    with pytest.raises(KaggleError, match="Refusing to extract") as error:
        download("paddy")
    assert named in str(error.value)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [f"{SLUG}.zip"]  # nothing was extracted
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("step", ["download", "extract"])
def test_disk_space_is_checked_first(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, step: str
) -> None:
    archive = len(kaggle.competitions[SLUG])
    free = archive // 2 if step == "download" else archive + 1000  # room for the archive, not for its files
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(free=free))
    with pytest.raises(KaggleError, match=f"Not enough disk space to {step}"):
        download("paddy")
    assert not (tmp_path / "data" / SLUG).exists()
    assert (tmp_path / "data" / f"{SLUG}.zip").exists() == (step == "extract")


def test_download_leaves_a_folder_it_did_not_write_alone(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    (tmp_path / "data" / SLUG).mkdir(parents=True)
    (tmp_path / "data" / SLUG / "my-notes.txt").write_text("mine")
    with pytest.raises(KaggleError, match="was not written by `kagglekit download`"):
        download("paddy")
    assert (tmp_path / "data" / SLUG / "my-notes.txt").read_text() == "mine"
    assert kaggle.requests == []


def test_corrupt_archive_is_deleted(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{SLUG}.zip").write_bytes(bytes(len(kaggle.competitions[SLUG])))  # full size, not a zip
    with pytest.raises(KaggleError, match="not a valid zip archive and has been deleted"):
        download("paddy")
    assert (download("paddy") / "train.csv").is_file()


# --- submit ---


def _submission_file(root: Path, content: str, name: str = "20250101-000000_sample.csv") -> Path:
    path = root / "submissions" / "paddy" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def _run_record(root: Path, submission: Path) -> Path:
    """A run record as kagglekit.runs writes it, naming `submission` as its artifact."""
    run_json = root / "runs" / "paddy" / "20250101-000000_sample" / "run.json"
    run_json.parent.mkdir(parents=True)
    record = {
        "status": "finished",
        "metrics": {"accuracy": 0.9},
        "artifacts": {"submission": str(submission.resolve())},
    }
    run_json.write_text(json.dumps(record))
    return run_json


def test_submit_refuses_a_file_that_fails_the_checks(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    data = download("paddy", tmp_path / "elsewhere")
    file = _submission_file(tmp_path, INVALID)
    with pytest.raises(SubmissionRefused) as error:
        submit(file, None, "bad", data=data)  # the sample submission from --data
    assert "1 rows, the sample submission has 2" in error.value.report.errors
    shutil.move(data.parent, tmp_path / "data")  # from the default download folder, data/<slug>/
    result = CliRunner().invoke(cli, ["submit", str(file), "-m", "bad"])
    assert "1 rows, the sample submission has 2" in result.output
    assert result.exit_code == 2
    assert "label(s) outside the 10 known classes (rice)" in result.output
    assert "not submitted. Fix the file, or pass --force" in result.output
    assert kaggle.calls("StartSubmissionUpload") == []


def test_submit_force_sends_an_invalid_file(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    file = _submission_file(tmp_path, "image_id,label\n200001.jpg,\n")  # an empty label: the grader refuses it
    result = CliRunner().invoke(cli, ["submit", str(file), "-m", "anyway", "--force", "--poll-interval", "0"])
    assert result.exit_code == 0, result.output
    assert "submitted although the checks below failed (--force)" in result.output
    assert kaggle.submissions[0].content == file.read_bytes()


def test_submit_uploads_polls_and_records_the_score(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    file = _submission_file(tmp_path, VALID)
    run_json = _run_record(tmp_path, file)
    kaggle.scoring[SLUG] = Scoring(public_score="0.91234", pending_polls=2)
    result = CliRunner().invoke(cli, ["submit", str(file), "-m", "convnext, 5 epochs", "--poll-interval", "0.01"])
    assert result.exit_code == 0, result.output
    assert "scored: public 0.91234" in result.output
    start, create = kaggle.calls("StartSubmissionUpload")[0].json(), kaggle.calls("CreateSubmission")[0].json()
    assert (start["competitionName"], start["fileName"], start["contentLength"]) == (SLUG, file.name, len(VALID))
    assert (create["competitionName"], create["submissionDescription"]) == (SLUG, "convnext, 5 epochs")
    assert kaggle.uploads[create["blobFileTokens"]] == file.read_bytes()
    assert len(kaggle.calls("ListSubmissions")) == 3  # pending, pending, complete
    sidecar = json.loads(sidecar_path(file).read_text())
    assert sidecar["status"] == "complete"
    assert sidecar["public_score"] == "0.91234"
    assert (sidecar["ref"], sidecar["competition"], sidecar["run"]) == (1001, SLUG, str(run_json.parent))
    run = json.loads(run_json.read_text())
    assert run["kaggle"]["public_score"] == "0.91234"
    assert run["metrics"] == {"accuracy": 0.9}  # the rest of the record is kept


def test_failed_submission_reports_kaggles_error(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    file = _submission_file(tmp_path, VALID)
    kaggle.scoring[SLUG] = Scoring(error_description="Submission has 2 rows, expected 3469.")
    result = CliRunner().invoke(cli, ["submit", str(file), "-m", "x", "--poll-interval", "0"])
    assert result.exit_code == 1
    assert "Kaggle could not score submission 1001: Submission has 2 rows, expected 3469." in result.output
    sidecar = json.loads(sidecar_path(file).read_text())
    assert (sidecar["status"], sidecar["error_description"]) == ("error", "Submission has 2 rows, expected 3469.")


def test_score_that_arrives_after_the_timeout_is_picked_up_by_submissions(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer
) -> None:
    file = _submission_file(tmp_path, VALID)
    run_json = _run_record(tmp_path, file)
    kaggle.scoring[SLUG] = Scoring(public_score="0.95", pending_polls=1)
    result = CliRunner().invoke(cli, ["submit", str(file), "-m", "quick", "--timeout", "0"])
    assert result.exit_code == 0, result.output
    assert "Submission 1001 was made and is still being scored after 0 s; `kagglekit submissions" in result.output
    assert json.loads(sidecar_path(file).read_text())["status"] == "pending"
    assert json.loads(run_json.read_text())["kaggle"]["status"] == "pending"
    [row] = submissions("paddy")
    assert (row.kaggle.status, row.kaggle.public_score, row.run) == ("complete", "0.95", run_json.parent)
    assert json.loads(sidecar_path(file).read_text())["public_score"] == "0.95"
    assert json.loads(run_json.read_text())["kaggle"]["public_score"] == "0.95"


def test_submit_needs_an_existing_file_of_a_known_competition(
    kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer
) -> None:
    (tmp_path / "elsewhere.csv").write_text(VALID)
    for args, problem in (
        (["elsewhere.csv"], "pass --competition"),
        (["elsewhere.csv", "--competition", "titanic"], "Unknown competition 'titanic'"),
        (["missing.csv", "--competition", "paddy"], "missing.csv: no such file"),
    ):
        result = CliRunner().invoke(cli, ["submit", *args, "-m", "x"])
        assert result.exit_code == 2
        assert problem in result.output
    assert kaggle.requests == []
    assert submit(tmp_path / "elsewhere.csv", "paddy", "x", timeout=0).record.competition == SLUG


def test_submissions_lists_files_runs_status_and_errors(
    kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cli: typer.Typer
) -> None:
    failed = _submission_file(tmp_path, VALID, "20250101-000000_a.csv")
    _run_record(tmp_path, failed)
    _submission_file(tmp_path, VALID, "20250102-000000_b.csv")
    kaggle.scoring[SLUG] = Scoring(error_description="Bad header", pending_polls=0)
    submit(failed, None, "first try", poll_interval=0)
    result = CliRunner().invoke(cli, ["submissions", "paddy"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        "20250101-000000_a.csv" in line
        and "20250101-000000_sample" in line
        and "error" in line
        and "Bad header" in line
        for line in lines
    )
    assert any("20250102-000000_b.csv" in line and "not submitted" in line for line in lines)
    assert "Unknown competition 'titanic'" in CliRunner().invoke(cli, ["submissions", "titanic"]).output
    _without_env_credentials(monkeypatch)
    listed = len(kaggle.calls("ListSubmissions"))
    [row, _] = submissions("paddy")  # without credentials: the saved status, and Kaggle is not asked
    assert (row.kaggle.status, row.kaggle.error_description) == ("error", "Bad header")
    assert len(kaggle.calls("ListSubmissions")) == listed


def test_submission_kaggle_refuses(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    kaggle.daily_limit = 0
    file = _submission_file(tmp_path, VALID)
    with pytest.raises(KaggleError, match="Kaggle answered 400: Submission not allowed: your team has used its 0"):
        submit(file, None, "x")
    assert not sidecar_path(file).exists()


def test_upload_that_fails(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    kaggle.upload_status = 403  # e.g. the signed URL expired
    with pytest.raises(KaggleError, match="Uploading .* to Kaggle failed"):
        submit(_submission_file(tmp_path, VALID), None, "x")
    assert kaggle.calls("CreateSubmission") == []


def test_kaggle_out_of_reach(kaggle: KaggleStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(KaggleError, match="Could not reach Kaggle"):
        submit(_submission_file(tmp_path, VALID), None, "x")
