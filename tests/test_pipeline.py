"""End to end: `kagglekit run` on a tiny sample trains, ensembles, writes, checks and scores a submission."""

import json
import re
from functools import partial

import pandas as pd
import pytest
from typer.testing import CliRunner

from kagglekit.cli import app
from kagglekit.pipeline import job as pipeline
from kagglekit.samples import ensure_sample

TINY_RECIPE = """
valid_pct = 0.25
seed = 1
tta = 1
[defaults]
size = 32
epochs = 2
lr = 5e-3
batch_size = 16
[[members]]
name = "a"
arch = "resnet10t"
resize = "squish"
[[members]]
name = "b"
arch = "resnet10t"
resize = "pad"
batch_size = 16
accum = 2
weight = 2
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path


def _run(*args: str):
    result = CliRunner().invoke(app, ["run", "paddy", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_run_end_to_end_then_compare_with_the_previous_submission(paddy_sample, recipe, tmp_path):
    common = ["--recipe", str(recipe), "--runs", str(tmp_path / "runs"), "--submissions", str(tmp_path / "subs")]
    first = _run("--data", str(paddy_sample.data_dir.parent), "--answers", str(paddy_sample.answers), *common)
    assert "ensemble" in first.output and "passed the submission checks" in first.output
    assert "Test accuracy against the hidden answers" in first.output
    last = first.output.rstrip().splitlines()[-1]  # the report's path, printed last
    assert "" not in first.output.splitlines(), first.output  # no line left where a progress bar was
    bars = r"Caching images|Resizing \d+ images|TTA \(\d\+1 passes\)|█|\r"  # rich's and fastai's, and redraws
    assert not re.search(bars, first.output), first.output  # no bar at all: a pipe gets one line per step
    assert last.startswith("Report: ") and last.endswith("report.html")

    (run_json,) = (tmp_path / "runs" / "paddy").glob("*/run.json")
    record = json.loads(run_json.read_text())
    assert record["status"] == "finished"
    assert record["config"]["recipe"]["members"][1]["accum"] == 2
    assert record["environment"]["torch"] and record["environment"]["fastai"]
    assert {"prepare_data", "train:a", "tta:a", "train:b", "tta:b", "ensemble", "submission"} <= set(
        record["timings_seconds"]
    )
    members = record["metrics"]["members"]
    assert set(members) == {"a", "b"} and all(0 <= m["valid_accuracy"] <= 1 for m in members.values())
    assert record["metrics"]["submission_check"]["ok"]
    folder = run_json.parent
    assert last == f"Report: {folder / 'report.html'}" and record["artifacts"]["report"] == str(folder / "report.html")
    for member in ("a", "b"):
        assert (folder / "members" / member / "model.safetensors").is_file()
        assert (folder / "members" / member / "test_label.csv.gz").is_file()
    splits = pd.read_csv(folder / "splits.csv")
    assert splits["is_valid"].mean() == pytest.approx(0.25, abs=0.03)

    submission = record["artifacts"]["submission"]
    frame = pd.read_csv(submission, dtype=str)
    sample = pd.read_csv(paddy_sample.data_dir / "sample_submission.csv", dtype=str)
    assert frame["image_id"].tolist() == sample["image_id"].tolist()

    second = _run("--data", str(paddy_sample.data_dir), *common)
    assert "compared with" in second.output
    files = sorted((tmp_path / "subs" / "paddy").glob("*.csv"))
    assert len(files) == 2, "the second run must not overwrite the first submission"
    (second_json,) = [p for p in (tmp_path / "runs" / "paddy").glob("*/run.json") if p != run_json]
    comparison = json.loads(second_json.read_text())["metrics"]["submission_check"]["comparisons"][0]
    assert comparison["prior"] == submission and comparison["common"] == len(sample)


@pytest.mark.slow
def test_sample_flag_generates_the_sample_and_scores_against_its_answers(recipe, tmp_path, monkeypatch, paddy):
    monkeypatch.setattr(pipeline, "ensure_sample", partial(ensure_sample, n_train=40, n_test=10))
    result = pipeline.run(paddy, recipe, sample=True, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "subs")
    assert result.check.ok
    assert result.test_score is not None and 0 <= result.test_score <= 1
    assert len(result.members) == 2 and result.ensemble.score is not None


def test_bad_input_gets_a_message_not_a_traceback(tmp_path, recipe):
    runner = CliRunner()
    result = runner.invoke(app, ["run", "paddy", "--data", str(tmp_path), "--recipe", str(recipe)])
    assert result.exit_code == 2
    assert "found no folder containing both train.csv" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[members]]\nname = "m"\narch = "resnet10t"\nbatch_size = 30\naccum = 4\n')
    result = runner.invoke(app, ["run", "paddy", "--data", str(tmp_path), "--recipe", str(bad)])
    assert result.exit_code == 2
    assert "bad.toml [[members]] #1: member 'm': batch_size 30" in result.output
    assert "not divisible by accum 4" in result.output
