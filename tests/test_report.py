"""report.html for each kind of competition sample: single-label (paddy), probabilities (dogs), multi-label
(planet) and DICOM (xray), each from one tiny two-member run; and `kagglekit report` / `review` on a finished run."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from PIL import Image
from typer.testing import CliRunner

from kagglekit import get_competition
from kagglekit.cli import app
from kagglekit.pipeline.job import run
from kagglekit.report import run_data
from kagglekit.samples import write_sample

TINY = """
valid_pct = 0.25
seed = 3
tta = 1
[defaults]
size = 32
epochs = 1
lr = 5e-3
batch_size = 16
[[members]]
name = "squish"
arch = "resnet10t"
[[members]]
name = "pad"
arch = "resnet10t"
resize = "pad"
"""
SECTIONS = {"overview", "data", "training", "scores", "mistakes", "correlation", "top-losses", "timings"}


class Page(HTMLParser):
    """The parts of a report the tests read: section ids, images (src, alt), table headers, the text."""

    def __init__(self, html: str):
        super().__init__()
        self.sections, self.images, self.headers, self.text, self.cards = [], [], [], [], 0
        self._in_th = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images.append((attrs["src"], attrs.get("alt", "")))
        elif tag == "div" and "card" in attrs.get("class", "").split():
            self.cards += 1
        self._in_th = tag == "th"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_th:
            self.headers.append(data.strip())

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def decoded(src: str) -> Image.Image:
    """The image of a `data:` URI, fully decoded (fails on anything else, e.g. a link to a file)."""
    assert src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), src[:60]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image


@pytest.fixture(scope="module", params=["paddy", "dogs", "planet", "xray"])
def sample_run(request, tmp_path_factory):
    competition = get_competition(request.param)
    folder = tmp_path_factory.mktemp(f"report-{request.param}")
    if request.param == "paddy":
        sample = request.getfixturevalue("paddy_sample")
    else:
        sample = write_sample(competition, folder / "data", seed=2, n_train=40, n_test=8)
    (folder / "tiny.toml").write_text(TINY)
    return run(competition, folder / "tiny.toml", data=sample.data_dir, answers=sample.answers,
               runs_dir=folder / "runs", submissions_dir=folder / "subs")  # fmt: skip


def test_every_sample_gets_a_standalone_report_with_every_section(sample_run):
    competition = sample_run.competition
    assert sample_run.report == sample_run.folder / "report.html"
    page = Page(sample_run.report.read_text())
    expected = SECTIONS | ({"calibration"} if competition.submission.kind == "probs" else set())
    assert set(page.sections) == expected
    for src, alt in page.images:  # embedded, and each one decodes
        assert decoded(src).size[0] > 10, alt
    alts = [alt for _, alt in page.images]
    assert {"class balance", "squish curves", "pad curves", "member correlation", "timings"} <= set(alts)
    rows = len((sample_run.folder / "ensemble" / "valid_ids.csv").read_text().splitlines()) - 1
    assert page.cards == min(24, rows)  # the top-loss gallery, one card per held-out image
    for header in ("with TTA", "without TTA", "TTA gain", "constant prediction"):
        assert header in page.headers
    if competition.submission.kind == "tags":  # planet, xray: per-tag F-scores and the thresholds used
        beta = "F2" if competition.metric == "f2_samples" else "F1"
        assert {"tag", "threshold", beta, "valid positives"} <= set(page.headers)
        assert "confusion matrix" not in alts
    else:
        assert "confusion matrix" in alts and {"precision", "recall", "true class"} <= set(page.headers)
    if competition.submission.kind == "probs":
        assert "calibration" in alts
    assert "as the files store them" in page.all_text  # image sizes of the originals, not of the cache entries
    if competition.name == "paddy":  # 480 x 640 photos, cached at 32 px: the gallery shows the originals
        thumbnails = [decoded(src) for src, _ in page.images if src.startswith("data:image/jpeg")]
        assert len(thumbnails) == page.cards and {max(t.size) for t in thumbnails} == {160}


@pytest.mark.parametrize("sample_run", ["paddy"], indirect=True)  # the paddy run above, not a new one
def test_report_command_rebuilds_it_from_the_run_folder(sample_run):
    data = run_data(sample_run.folder)
    assert data.image_cache["cached"] == 0 and data.image_cache["reused"] > 0  # the run's own cache entries
    before = Page(sample_run.report.read_text())
    sample_run.report.unlink()
    result = CliRunner().invoke(app, ["report", str(sample_run.folder)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"Report: {sample_run.report}" in result.output.replace("\n", "")
    after = Page(sample_run.report.read_text())
    assert after.sections == before.sections and len(after.images) == len(before.images)


@pytest.mark.parametrize("sample_run", ["paddy"], indirect=True)
def test_review_command_writes_the_ranking_and_the_contact_sheet(sample_run):
    result = CliRunner().invoke(app, ["review", str(sample_run.folder), "--top", "8"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "most likely mislabelled" in result.output
    sheet = Page((sample_run.folder / "review.html").read_text())
    assert sheet.cards == 8 and all(decoded(src) for src, _ in sheet.images)
    assert (sample_run.folder / "review.csv").is_file()


def test_report_of_a_missing_run_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no run.json here" in result.output
