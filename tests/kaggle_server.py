"""A stand-in for Kaggle's API on 127.0.0.1, so the tests drive the real `kaggle` client without the network.

How the real client (kaggle 2.2.4 on kagglesdk 0.1.37) ends up here:

- `KAGGLE_API_ENVIRONMENT=LOCALHOST` makes `KaggleApi` build its `KaggleClient` with `KaggleEnv.LOCAL`, whose
  endpoint is `http://localhost`; outside production kagglesdk POSTs JSON to `<endpoint>/api/v1/<service>/<method>`.
  This kagglesdk has no endpoint-override variable, and LOCAL (port 80) and TEST (port 7777) fix the port.
- `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` name this server, and `requests` honours them for everything the client
  sends (the API calls, the archive redirect it follows, the signed-URL upload), so all of it arrives here in proxy
  form whatever host it names. Any other host, and any HTTPS tunnel (CONNECT), is refused and recorded: a
  misconfigured client fails here instead of reaching Kaggle.

Besides competitions it serves what notebooks and offline packs need, as the client calls them (kaggle_api_extended):
`dataset_create_new` asks `datasets.DatasetApiService/GetDatasetStatus` (a 404 means the dataset is new), uploads
each file through `blobs.BlobApiService/StartBlobUpload` and a PUT to the signed URL, then sends
`datasets.DatasetApiService/CreateDataset` with the upload tokens; `kernels_push` sends
`kernels.KernelsApiService/SaveKernel` with the metadata and the notebook text; `kernels_status` asks
`GetKernelSessionStatus`; `kernels_output` asks `ListKernelSessionOutput` and GETs each file's URL. A code
competition's submission is `competitions.CompetitionApiService/CreateCodeSubmission` (competition, kernel owner and
slug, version, file name, description), and a notebook's metadata comes from `kernels.KernelsApiService/GetKernel`.

Transient failures on demand: `throttled` answers a method (e.g. "ListSubmissions", "blob" for the archive download)
with a 429 and `Retry-After` a given number of times; `dropped` closes the connection without an answer; and
`cut_blobs` sends only half of the archive's bytes before closing.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import secrets
import stat
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import pytest

HOST = "localhost"  # the host of KaggleEnv.LOCAL's endpoint
SERVICE = "/api/v1/competitions.CompetitionApiService/"
BLOBS = "/api/v1/blobs.BlobApiService/"
DATASETS = "/api/v1/datasets.DatasetApiService/"
KERNELS = "/api/v1/kernels.KernelsApiService/"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."


@dataclass
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")


@dataclass
class Scoring:
    """How the stand-in scores a competition's submissions."""

    public_score: str | None = "0.9"
    private_score: str | None = None
    error_description: str | None = None  # set: the submission fails with this description
    pending_polls: int = 1  # list calls that still show a new submission as pending


@dataclass
class Submission:
    ref: int
    competition: str
    file_name: str
    description: str
    content: bytes
    date: str
    polls_left: int
    status: str = "PENDING"
    public_score: str | None = None
    private_score: str | None = None
    error_description: str | None = None
    kernel: str | None = None  # owner/slug of the notebook, for a code competition's submission
    kernel_version: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ApiSubmission fields, named as kagglesdk deserialises them."""
        return {
            "ref": self.ref,
            "fileName": self.file_name,
            "date": self.date,
            "description": self.description,
            "status": self.status,
            "publicScore": self.public_score,
            "privateScore": self.private_score,
            "errorDescription": self.error_description,
            "totalBytes": len(self.content),
        }


@dataclass
class Dataset:
    """A dataset as CreateDataset made it: its request, and the files uploaded for it."""

    request: dict[str, Any]
    files: dict[str, bytes]


@dataclass
class KernelRun:
    """What a pushed notebook does on the stand-in: the status each status call reports (the last one stays), the
    failure message of an ERROR, and the files its session writes to /kaggle/working."""

    statuses: list[str] = field(default_factory=lambda: ["RUNNING", "COMPLETE"])
    failure_message: str | None = None
    outputs: dict[str, bytes] = field(default_factory=dict)
    log: str = ""
    polls: int = 0  # status calls since the last push


@dataclass
class KaggleStandIn:
    """Competitions, uploads and submissions of one fake Kaggle account, served on a random local port."""

    username: str = "kk-user"
    key: str = "kk-key"
    token: str | None = None  # an access token accepted as Bearer auth
    competitions: dict[str, bytes] = field(default_factory=dict)  # slug -> the archive of its data
    unaccepted: set[str] = field(default_factory=set)  # slugs whose rules the account has not accepted
    scoring: dict[str, Scoring] = field(default_factory=dict)
    daily_limit: int | None = None  # submissions accepted before Kaggle refuses more
    upload_status: int = 200  # what the signed upload URL answers
    requests: list[Request] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # what the stand-in would not serve: other hosts, HTTPS
    uploads: dict[str, bytes] = field(default_factory=dict)  # upload token -> bytes PUT to its signed URL
    upload_names: dict[str, str] = field(default_factory=dict)  # upload token -> file name given at its start
    datasets: dict[str, Dataset] = field(default_factory=dict)  # "owner/slug" -> the dataset
    kernel_runs: dict[str, KernelRun] = field(default_factory=dict)  # kernel slug -> how it runs (default: fine)
    pushes: list[dict[str, Any]] = field(default_factory=list)  # SaveKernel requests, in order
    throttled: dict[str, int] = field(default_factory=dict)  # method -> 429 answers still to give
    retry_after: str = "7"  # the Retry-After header of a 429
    dropped: dict[str, int] = field(default_factory=dict)  # method -> connections still to close unanswered
    cut_blobs: int = 0  # archive downloads still to cut off halfway

    def __post_init__(self) -> None:
        self._signature = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.stand_in = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> KaggleStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def calls(self, method: str, service: str = SERVICE) -> list[Request]:
        """The API calls received for one method, e.g. 'CreateSubmission' (of `service`: SERVICE, KERNELS...)."""
        return [r for r in self.requests if r.path == service + method]

    # --- what each endpoint answers: (status, headers, body) ---

    def handle(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body); status DROP: close the connection unanswered, CUT: send half the body."""
        with self._lock:
            self.requests.append(request)
            method = "blob" if request.path.startswith("/blobs/") else request.path.rsplit("/", 1)[-1]
            if self.throttled.get(method, 0) > 0:
                self.throttled[method] -= 1
                status, headers, body = _error(429, "Too many requests")
                return status, {**headers, "Retry-After": self.retry_after}, body
            if self.dropped.get(method, 0) > 0:
                self.dropped[method] -= 1
                return DROP, {}, b""
            if request.method == "GET" and request.path.startswith("/blobs/"):
                return self._blob(request)
            if request.method == "GET" and request.path.startswith("/kernel-output/"):
                return self._kernel_file(request)
            if request.method == "PUT" and request.path.startswith("/upload/"):
                token = request.path.removeprefix("/upload/")
                if token not in self.upload_names:
                    return 403, {"Content-Type": "text/plain"}, b"no upload was started for this URL"
                if self.upload_status == 200:
                    self.uploads[token] = request.body
                return self.upload_status, {}, b""
            if request.method != "POST" or not request.path.startswith("/api/v1/"):
                return _error(404, f"No such endpoint: {request.method} {request.path}")
            if not self._authorized(request.headers.get("Authorization", "")):
                return _error(401, "Unauthenticated")
            others = {
                BLOBS + "StartBlobUpload": self._start_blob_upload,
                DATASETS + "GetDatasetStatus": self._dataset_status,
                DATASETS + "CreateDataset": self._create_dataset,
                KERNELS + "SaveKernel": self._save_kernel,
                KERNELS + "GetKernelSessionStatus": self._kernel_status,
                KERNELS + "ListKernelSessionOutput": self._kernel_output,
                KERNELS + "GetKernel": self._get_kernel,
            }
            if request.path in others:
                return others[request.path](request.json())
            if not request.path.startswith(SERVICE):
                return _error(404, f"No such service: {request.path}")
            method = request.path.removeprefix(SERVICE)
            body = request.json()
            slug = body.get("competitionName", "")
            if slug not in self.competitions:
                return _error(404, f"Competition {slug!r} not found")
            handlers = {
                "DownloadDataFiles": self._download,
                "StartSubmissionUpload": self._start_upload,
                "CreateSubmission": self._create_submission,
                "ListSubmissions": self._list_submissions,
                "CreateCodeSubmission": self._create_code_submission,
            }
            if method not in handlers:
                return _error(404, f"No such method: {method}")
            return handlers[method](slug, body)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return self.token is not None and value == self.token
        if scheme == "Basic":
            return base64.b64decode(value).decode() == f"{self.username}:{self.key}"
        return False

    def _download(self, slug: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Kaggle answers with a redirect to a signed storage URL, which the client follows."""
        if slug in self.unaccepted:
            return _error(403, RULES_MESSAGE)
        return 302, {"Location": f"http://{HOST}/blobs/{slug}.zip?sig={self._signature}"}, b""

    def _blob(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(request.path)
        slug = url.path.removeprefix("/blobs/").removesuffix(".zip")
        if parse_qs(url.query).get("sig") != [self._signature] or slug not in self.competitions:
            return 403, {"Content-Type": "text/plain"}, b"bad signature"
        headers = {"Content-Type": "application/zip", "Last-Modified": formatdate(0, usegmt=True)}
        if self.cut_blobs > 0:
            self.cut_blobs -= 1
            return CUT, headers, self.competitions[slug]
        return 200, headers, self.competitions[slug]

    def _start_upload(self, slug: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        token = secrets.token_hex(8)
        self.upload_names[token] = body["fileName"]
        return _json({"token": token, "createUrl": f"http://{HOST}/upload/{token}"})

    def _create_submission(self, slug: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        token = body.get("blobFileTokens", "")
        if token not in self.uploads:
            return _error(400, "Unknown blob token")
        if self.daily_limit is not None and len(self.submissions) >= self.daily_limit:
            return _error(400, f"Submission not allowed: your team has used its {self.daily_limit} submissions today.")
        scoring = self.scoring.get(slug, Scoring())
        submission = Submission(
            ref=len(self.submissions) + 1001,
            competition=slug,
            file_name=self.upload_names[token],
            description=body.get("submissionDescription", ""),
            content=self.uploads[token],
            date=_now(),
            polls_left=scoring.pending_polls,
        )
        self.submissions.append(submission)
        return _json({"message": "Successfully submitted", "ref": submission.ref})

    def _create_code_submission(self, slug: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """A notebook's output, submitted: Kaggle reruns the notebook's version on the hidden test set and scores it."""
        ref = f"{body.get('kernelOwner')}/{body.get('kernelSlug')}"
        versions = sum(p.get("slug") == ref for p in self.pushes)
        if not versions or not 1 <= body.get("kernelVersion", versions) <= versions:
            return _error(404, f"Notebook {ref} version {body.get('kernelVersion')} not found")
        if self.daily_limit is not None and len(self.submissions) >= self.daily_limit:
            return _error(400, f"Submission not allowed: your team has used its {self.daily_limit} submissions today.")
        submission = Submission(
            ref=len(self.submissions) + 1001, competition=slug, file_name=body.get("fileName", ""),
            description=body.get("submissionDescription", ""), content=b"", date=_now(),
            polls_left=self.scoring.get(slug, Scoring()).pending_polls, kernel=ref,
            kernel_version=body.get("kernelVersion"),
        )  # fmt: skip
        self.submissions.append(submission)
        return _json({"message": "Successfully submitted", "ref": submission.ref})

    def _list_submissions(self, slug: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        scoring = self.scoring.get(slug, Scoring())
        mine = [s for s in self.submissions if s.competition == slug]
        for submission in mine:
            if submission.status != "PENDING":
                continue
            if submission.polls_left > 0:
                submission.polls_left -= 1
            elif scoring.error_description is not None:
                submission.status, submission.error_description = "ERROR", scoring.error_description
            else:
                submission.status = "COMPLETE"
                submission.public_score, submission.private_score = scoring.public_score, scoring.private_score
        newest_first = sorted(mine, key=lambda s: s.ref, reverse=True)[: body.get("pageSize", 20)]
        return _json({"submissions": [s.to_json() for s in newest_first], "nextPageToken": ""})

    # --- datasets and notebooks ---

    def _start_blob_upload(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        token = secrets.token_hex(8)
        self.upload_names[token] = body["name"]
        return _json({"token": token, "createUrl": f"http://{HOST}/upload/{token}"})

    def _dataset_status(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if f"{body.get('ownerSlug')}/{body.get('datasetSlug')}" not in self.datasets:
            return _error(404, "Dataset not found")
        return _json({"status": "READY"})

    def _create_dataset(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
        tokens = [f.get("token", "") for f in body.get("files", [])]
        if any(token not in self.uploads for token in tokens):
            return _error(400, "Unknown blob token")
        self.datasets[ref] = Dataset(body, {self.upload_names[t]: self.uploads[t] for t in tokens})
        return _json({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok"})

    def _save_kernel(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Kaggle saves a version and starts its session; sources it does not know come back as invalid."""
        self.pushes.append(body)
        owner, _, slug = body.get("slug", "").partition("/")
        self.kernel_runs.setdefault(slug, KernelRun()).polls = 0
        datasets = [d for d in body.get("datasetDataSources", []) if d not in self.datasets]
        competitions = [c for c in body.get("competitionDataSources", []) if c not in self.competitions]
        return _json({
            "ref": f"/code/{owner}/{slug}", "url": f"https://www.kaggle.com/code/{owner}/{slug}",
            "versionNumber": sum(p.get("slug") == body.get("slug") for p in self.pushes),
            "invalidDatasetSources": datasets, "invalidCompetitionSources": competitions,
        })  # fmt: skip

    def _pushed(self, body: dict[str, Any]) -> KernelRun | None:
        """The run of a notebook this account pushed; None for one Kaggle would not know."""
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        if not any(p.get("slug") == ref for p in self.pushes):
            return None
        return self.kernel_runs[body["kernelSlug"]]

    def _kernel_status(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        run = self._pushed(body)
        if run is None:
            return _error(404, "Notebook not found")
        status = run.statuses[min(run.polls, len(run.statuses) - 1)]
        run.polls += 1
        return _json({"status": status, "failureMessage": run.failure_message if status == "ERROR" else None})

    def _get_kernel(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """The notebook's metadata as its latest push left it (version = number of pushes) and its source."""
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        pushes = [p for p in self.pushes if p.get("slug") == ref]
        if not pushes:
            return _error(404, "Notebook not found")
        last = pushes[-1]
        metadata = {
            "ref": ref, "title": last.get("newTitle"), "slug": body["kernelSlug"], "language": "python",
            "kernelType": "notebook", "currentVersionNumber": len(pushes),
            "competitionDataSources": last.get("competitionDataSources", []),
            "datasetDataSources": last.get("datasetDataSources", []), "machineShape": last.get("machineShape"),
        }  # fmt: skip
        blob = {"source": last.get("text", ""), "language": "python", "kernelType": "notebook", "slug": ref}
        return _json({"metadata": metadata, "blob": blob})

    def _kernel_output(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        run = self._pushed(body)
        if run is None:
            return _error(404, "Notebook not found")
        base = f"http://{HOST}/kernel-output/{body['userName']}/{body['kernelSlug']}/"
        files = [{"fileName": name, "url": f"{base}{name}?sig={self._signature}"} for name in run.outputs]
        return _json({"files": files, "log": run.log, "nextPageToken": ""})

    def _kernel_file(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(request.path)
        _owner, slug, name = url.path.removeprefix("/kernel-output/").split("/", 2)
        run = self.kernel_runs.get(slug)
        if parse_qs(url.query).get("sig") != [self._signature] or run is None or name not in run.outputs:
            return 403, {"Content-Type": "text/plain"}, b"bad signature"
        return 200, {"Content-Type": "application/octet-stream"}, run.outputs[name]


# A small Paddy Doctor download, and a valid submission for it, for the tests that talk to the stand-in.
PADDY_SLUG = "paddy-disease-classification"
PADDY_FILES: dict[str, str | bytes] = {
    "train.csv": "image_id,label,variety,age\n" + "100001.jpg,blast,ADT45,45\n" * 200,
    "sample_submission.csv": "image_id,label\n200001.jpg,\n200002.jpg,\n",
    "train_images/blast/100001.jpg": b"\xff\xd8" + bytes(20_000),
    "test_images/200001.jpg": b"\xff\xd8" + bytes(20_000),
    "test_images/200002.jpg": b"\xff\xd8" + bytes(20_000),
}
PADDY_SUBMISSION = "image_id,label\n200001.jpg,blast\n200002.jpg,hispa\n"


def zip_archive(
    files: dict[str, str | bytes], links: dict[str, str] | None = None, method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A competition's archive: `files` by name, and symbolic `links` (name -> target) as zip stores them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


@contextlib.contextmanager
def kaggle_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **stand_in: Any) -> Iterator[KaggleStandIn]:
    """A running stand-in with the real client pointed at it; HOME, working folder, temp folder and environment
    are the test's own, with the stand-in's credentials in KAGGLE_USERNAME/KAGGLE_KEY. Nothing may be refused."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name.lower() in ("no_proxy", "xdg_config_home", "columns"):
            monkeypatch.delenv(name)
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the client keeps upload state there
    monkeypatch.chdir(tmp_path)
    with KaggleStandIn(**stand_in) as server:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, server.proxy)
        monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
        monkeypatch.setenv("KAGGLE_USERNAME", server.username)
        monkeypatch.setenv("KAGGLE_KEY", server.key)
        with contextlib.redirect_stdout(io.StringIO()):  # `import kaggle` authenticates and reports it
            from kaggle.api.kaggle_api_extended import KaggleApi
        # The client reads KAGGLE_API_ENVIRONMENT once, when first imported, into this class attribute.
        monkeypatch.setattr(KaggleApi, "args", ["--local"])
        yield server
    assert server.refused == []


DROP, CUT = 0, -1  # pseudo statuses: close the connection unanswered / after half the body


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _json(data: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    """Kaggle's error body: kagglesdk raises HTTPError(message) for a JSON body whose code is >= 400."""
    return _json({"code": status, "message": message}, status)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def do_CONNECT(self) -> None:
        self._refuse(f"CONNECT {self.path}")

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)  # proxy form: http://localhost/api/v1/...
        body = self._read_body()
        if url.hostname != HOST:
            self._refuse(f"{self.command} {self.path}")
            return
        path = url.path + (f"?{url.query}" if url.query else "")
        stand_in: KaggleStandIn = self.server.stand_in  # type: ignore[attr-defined]
        status, headers, content = stand_in.handle(Request(self.command, path, dict(self.headers), body))
        self._respond(status, headers, content)

    def _read_body(self) -> bytes:
        """Every body the client sends has a Content-Length, the signed-URL upload included (it streams a file)."""
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _refuse(self, what: str) -> None:
        self.server.stand_in.refused.append(what)  # type: ignore[attr-defined]
        self.close_connection = True
        self._respond(403, {"Content-Type": "text/plain"}, b"the Kaggle stand-in serves only http://localhost")

    def _respond(self, status: int, headers: dict[str, str], content: bytes) -> None:
        if status == DROP:
            self.close_connection = True
            return
        self.send_response(200 if status == CUT else status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[: len(content) // 2] if status == CUT else content)
        if status == CUT:
            self.close_connection = True
