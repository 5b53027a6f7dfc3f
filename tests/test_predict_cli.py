"""Prediction without a model: the time plan, Kaggle's rerun flag and default budget, and the command line refusing
what it cannot do before any work (an --output it cannot write, a source that is neither a pack nor a run)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kagglekit.cli import app
from kagglekit.data.cache import CacheSpec
from kagglekit.data.images import PreparedItems, cache_spec
from kagglekit.data.locate import locate_data
from kagglekit.errors import BudgetError, DataError
from kagglekit.kaggle.notebook import is_competition_rerun
from kagglekit.pipeline import preflight
from kagglekit.predict import budget, files, inputs, submission
from kagglekit.predict.budget import MemberCost
from kagglekit.predict.pack import InferencePack


def test_fit_plan_drops_tta_passes_before_members_lowest_weight_first():
    costs = [MemberCost("big", 0.6, 1, 10.0, 0.010, 0.012), MemberCost("small", 0.4, 2, 5.0, 0.004, 0.005, 0.001)]
    images = 10_000
    assert costs[1].seconds(images, 1) == images * 0.001 + 2 * (5.0 + images * (0.004 + 0.005))  # resized once
    whole = sum(c.seconds(images, 4) for c in costs)
    assert budget.fit_plan(costs, images, 4, whole).tta == 4
    assert budget.fit_plan(costs, images, 4, whole - 1).tta == 3  # one TTA pass less, every member kept
    no_tta = sum(c.seconds(images, 0) for c in costs)
    plan = budget.fit_plan(costs, images, 4, no_tta)
    assert (plan.tta, plan.members, plan.dropped, plan.estimate) == (0, ["big", "small"], [], no_tta)
    plan = budget.fit_plan(costs, images, 4, no_tta - 1)
    assert (plan.tta, plan.members, plan.dropped) == (0, ["big"], ["small"])  # then the lowest weight goes
    assert plan.estimate == costs[0].seconds(images, 0) == 10 + images * 0.010
    assert plan.summary() == (
        "Plan: TTA 4 -> 0 passes; dropped member(s) small (lowest weight); 1 member(s), TTA 0: estimated 1.8 min of "
        "3.5 min"
    )
    assert budget.measured(costs, images, 3 * 3600)[1:] == [
        "  big (weight 0.6, 1 model(s)): 10.0 ms/image plain, 12.0 ms/image per TTA pass, 0.0 ms/image to resize, "
        "10.0 s to load",
        "  small (weight 0.4, 2 model(s)): 4.0 ms/image plain, 5.0 ms/image per TTA pass, 1.0 ms/image to resize, "
        "5.0 s to load",
    ]
    with pytest.raises(BudgetError, match=r"member big alone without TTA, needs an estimated 1.8 min for 10000 test"):
        budget.fit_plan(costs, images, 4, 60)
    twins = [MemberCost("fast", 0.5, 1, 0.0, 0.001, 0.001), MemberCost("slow", 0.5, 1, 0.0, 0.002, 0.002)]
    assert budget.fit_plan(twins, images, 0, 15).dropped == ["slow"]  # of equal weights, the slowest goes first


@pytest.mark.parametrize(
    ("value", "rerun"), [(None, False), ("", False), ("False", False), ("True", True), ("1", True)]
)
def test_competition_rerun_is_detected(monkeypatch: pytest.MonkeyPatch, value: str | None, rerun: bool) -> None:
    monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)
    if value is not None:
        monkeypatch.setenv("KAGGLE_IS_COMPETITION_RERUN", value)
    assert is_competition_rerun() is rerun


def test_default_budget_is_kaggles_limit_minus_a_margin_only_on_kaggle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    assert budget.default_budget_hours() is None
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert budget.default_budget_hours() == 8.0


@pytest.fixture
def no_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any prediction fails the test: what is checked must be refused before the pack is even read."""

    def refuse(*args, **kwargs):
        raise AssertionError("predicted although the command should have stopped first")

    monkeypatch.setattr(files, "predict_files", refuse)


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """`folder` (and what is below it) behaves as a read-only mount (chmod does not stop root, who runs some CI and
    sandboxes)."""
    real = preflight.tempfile.TemporaryFile

    def probe(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(folder)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(preflight.tempfile, "TemporaryFile", probe)


def test_output_into_a_read_only_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_prediction: None
) -> None:
    folder = tmp_path / "mounted"
    folder.mkdir()
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8")
    _read_only(monkeypatch, folder)
    result = CliRunner().invoke(app, ["predict", str(tmp_path), str(image), "--output", str(folder / "out" / "p.csv")])
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line]  # one line
    assert line == (
        f"error: --output {folder / 'out'}: cannot write there (read-only file system). Choose a writable folder "
        "with --output."
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_into_a_folder_without_write_permission(tmp_path: Path, no_prediction: None) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8")
    result = CliRunner().invoke(app, ["predict", str(tmp_path), str(image), "--output", str(folder / "p.csv")])
    assert result.exit_code == 2 and "cannot write there (permission denied)" in result.output


def test_predict_says_what_it_needs(tmp_path: Path, no_prediction: None) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8")
    for args, problem in (
        ([str(tmp_path), str(image), "--data", str(tmp_path)], "Give either IMAGES or --data, not both"),
        ([str(tmp_path), "--output", "x.csv"], "--output is for IMAGES"),
        ([str(tmp_path), str(image), "--output", str(tmp_path)], "is a folder; name the CSV file"),
        ([str(tmp_path / "nope"), "--data", str(tmp_path)], "no such folder (expected an inference pack"),
    ):
        result = CliRunner().invoke(app, ["predict", *args])
        assert result.exit_code == 2, result.output
        assert problem in " ".join(result.output.split())


@pytest.mark.parametrize("layout", ["competitions/{slug}", "{slug}", "datasets/someone/{slug}"])
def test_competition_is_found_in_every_kaggle_input_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paddy, layout: str
) -> None:
    folder = tmp_path / layout.format(slug=paddy.slug)
    folder.mkdir(parents=True)
    (folder / paddy.train_csv).write_text("image_id,label,variety,age\n")
    (folder / paddy.sample_submission).write_text("image_id,label\n")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("KAGGLEKIT_INPUT_ROOT", str(tmp_path))
    assert locate_data(paddy, None) == folder


def test_test_images_are_prepared_with_the_packs_cache_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict = {}

    def prepare_images(competition, items, cache_dir, cover):
        seen.update(spec=cache_spec(competition, cover), ids=items.test["id"].tolist())
        return PreparedItems(items)

    monkeypatch.setattr(inputs, "prepare_images", prepare_images)
    classes = [str(n) for n in range(22)]
    pack = InferencePack(
        folder=tmp_path, competition="xray", tta=0, members=[], tuned_weights=False, thresholds=None,
        shares={"Target": np.full(22, 0.1)}, vocab={"Target": classes}, cache=CacheSpec((123, 45), 1, "all"),
        source={},
    )  # fmt: skip
    test = pd.DataFrame({"id": ["1.2.3"], "path": [str(tmp_path / "a.dcm")]})
    data = inputs.prepare_test(pack, test, test[["id"]], tmp_path)
    assert seen == {"spec": CacheSpec((123, 45), 1, "all"), "ids": ["1.2.3"]}  # the run's cover and frames
    assert data.items.test["id"].tolist() == ["1.2.3"] and data.vocab == {"Target": classes}
    np.testing.assert_allclose(data.prior()["Target"], 0.1)  # the pack's shares, not a training table's


def test_a_budget_used_up_before_predicting_stops_without_measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def measure(*args, **kwargs):
        raise AssertionError("measured although no time was left")

    monkeypatch.setattr(budget, "measure", measure)
    pack = InferencePack(tmp_path, "paddy", 2, [], False, None, {}, {}, CacheSpec((64, 64)), {})
    test = pd.DataFrame({"id": ["a.jpg"], "path": ["a.jpg"]})
    with pytest.raises(BudgetError, match=r"budget of 3.6 s was used up before predicting began \(reading and prep"):
        budget.plan_prediction(pack, test, 2, 0.001, started=time.monotonic() - 10)


def test_each_prediction_gets_its_own_locked_record_folder_after_the_output_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two identical predictions (even in the same second) keep two records, each folder locked while it predicts
    (as `run`'s are); an output folder that cannot be written is refused before the data is even looked for."""
    pack = InferencePack(tmp_path / "pack", "paddy", 0, [], False, None, {}, {}, CacheSpec((64, 64)), {})
    monkeypatch.setattr(submission, "locate_data", lambda competition, data: tmp_path / "data")
    seen = []

    def stages(record, *args):
        lock = json.loads((record.folder / "run.lock").read_text())
        seen.append((record.folder, lock["pid"], json.loads(record.path.read_text())["status"]))
        return "done"

    monkeypatch.setattr(submission, "_predict_stages", stages)
    outputs = {"runs_dir": tmp_path / "runs", "submissions_dir": tmp_path / "subs"}
    assert [submission.predict_submission(pack, **outputs) for _ in range(2)] == ["done", "done"]
    (first, pid, status), (second, _, _) = seen
    assert first != second and first.parent == second.parent == tmp_path / "runs" / "paddy"
    assert (pid, status) == (os.getpid(), "running") and first.name.endswith("_predict-pack")
    assert not (first / "run.lock").exists()  # released when it ended

    (tmp_path / "blocked").write_text("a file where the submissions folder should be")
    monkeypatch.setattr(submission, "locate_data", lambda *a: pytest.fail("looked for the data first"))
    with pytest.raises(DataError, match=f"--submissions {tmp_path / 'blocked'}: cannot write there"):
        submission.predict_submission(pack, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "blocked")
