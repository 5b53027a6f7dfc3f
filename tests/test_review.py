"""Label-noise review: planted wrong labels come first; every training row is ranked once, with where its
evidence comes from (out-of-fold, held out, or seen in training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from colours import COLOURS, colours, registered
from test_report import Page, decoded

from kagglekit.data.items import Items
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.pipeline.data import Data
from kagglekit.report.review import review_labels, write_review
from kagglekit.report.run_files import MemberFiles, RunFiles, run_data

CLASSES = sorted(COLOURS)


@pytest.fixture(scope="module")
def reviewed(colours_run):
    with registered():
        csv, html = write_review(colours_run.folder, data=run_data(colours_run.folder, competition=colours()), top=12)
    return pd.read_csv(csv, dtype={"id": str}, keep_default_na=False), html


def test_planted_wrong_labels_come_first(reviewed, colours_sample):
    review, _ = reviewed
    _, planted = colours_sample
    top = review.head(2 * len(planted)).set_index("id")  # 4 planted among 64 rows: all in the top 8
    assert set(planted) <= set(top.index), review.head(10)
    for image_id, (given, _) in planted.items():
        assert top.at[image_id, "given_label"] == given and top.at[image_id, "predicted_label"] != given
    assert review["wrong"].is_monotonic_decreasing  # every disagreement before every agreement
    wrong = review[review["wrong"]]
    assert wrong["loss"].is_monotonic_decreasing and review[~review["wrong"]]["loss"].is_monotonic_decreasing


def test_every_training_row_is_ranked_once_with_its_evidence(reviewed, colours_run):
    review, _ = reviewed
    assert review.columns.tolist() == ["rank", "id", "given_label", "predicted_label", "probability", "loss",
                                       "split", "wrong", "action", "label"]  # fmt: skip
    train = pd.read_csv(colours_run.folder / "splits.csv", dtype={"id": str})
    assert sorted(review["id"]) == sorted(train["id"]) and review["rank"].tolist() == list(range(1, len(train) + 1))
    held_out = set(colours_run.ensemble.valid.ids)
    assert set(review.loc[review["split"] == "valid", "id"]) == held_out
    assert set(review.loc[review["split"] == "train (seen)", "id"]) == set(train["id"]) - held_out
    assert (review["action"] == "").all() and (review["label"] == "").all()
    valid = review[review["split"] == "valid"].set_index("id")  # held-out rows: the ensemble's own losses
    probs = colours_run.ensemble.valid.subset(list(valid.index)).tasks["colour"]
    given = [CLASSES.index(c) for c in valid["given_label"]]
    np.testing.assert_allclose(valid["loss"], -np.log(np.clip(probs[np.arange(len(given)), given], 1e-7, 1)),
                               atol=1e-4)  # fmt: skip


def test_the_contact_sheet_shows_the_top_rows(reviewed):
    review, html = reviewed
    page = Page(Path(html).read_text())
    assert page.cards == 12 and len(page.images) == 12 and all(decoded(src) for src, _ in page.images)
    assert f"#1 {review['id'][0]}" in page.all_text and "--corrections" in page.all_text


def test_with_folds_the_evidence_is_out_of_fold_and_disagreements_come_first():
    ids = [f"r{i}" for i in range(6)]
    labels = ["red", "red", "blue", "blue", "green", "green"]
    probs = np.array([[0.05, 0.05, 0.85, 0.05], [0.1, 0.1, 0.7, 0.1], [0.9, 0.03, 0.04, 0.03],
                      [0.3, 0.05, 0.35, 0.3], [0.25, 0.26, 0.25, 0.24], [0.05, 0.05, 0.05, 0.85]])  # fmt: skip
    valid = Probabilities(ids, {"colour": probs.astype(np.float32)}, {"colour": CLASSES})
    saved = {f"fold{k}": {"member": {"weight": 1.0}} for k in range(2)}
    member = MemberFiles("k", Path("."), saved, valid, valid, None, {"in_ensemble": True})
    train = pd.DataFrame({"id": ids, "colour": labels, "path": ""})
    none = pd.DataFrame(columns=["id", "path"])
    data = Data(colours(), Items(Path("."), train, none, none, none), {"colour": CLASSES}, none)
    review = review_labels(RunFiles(Path("."), {}, [member], None, None, None), data).set_index("id")
    assert (review["split"] == "out-of-fold").all()
    # r5 (green, predicted yellow at 0.85) and r3 (blue, predicted red at 0.35) disagree with their labels; r4 is
    # right but unsure (green at 0.26): its loss (1.35) beats r3's (1.20), yet it comes after every disagreement
    assert review.index.tolist()[:3] == ["r5", "r3", "r4"] and review["wrong"].sum() == 2
    assert review.at["r4", "loss"] > review.at["r3", "loss"]
    assert review.at["r5", "probability"] == pytest.approx(0.85) and review.at["r5", "predicted_label"] == "yellow"
