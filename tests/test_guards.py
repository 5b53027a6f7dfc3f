"""The guards: a member no better than the constant prediction is flagged and left out of the ensemble, TTA is
measured per member (and `tta = "auto"` keeps it only where it helps), an ensemble below its best member says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from colours import COLOURS, colours, registered

from kagglekit.data.items import Items
from kagglekit.ensemble.combine import mean_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import RecipeError
from kagglekit.pipeline.combine import ensemble_members
from kagglekit.pipeline.data import Data
from kagglekit.pipeline.members import MemberOutput, _assess, _Part
from kagglekit.predict.pack import export_pack, load_pack
from kagglekit.recipe import AUTO_TTA_PASSES, parse_recipe

CLASSES = sorted(COLOURS)  # blue, green, red, yellow
TRUTH = ["red"] * 6 + ["green"] * 3 + ["blue"] * 2 + ["yellow"]  # the prior: red, 0.5 accuracy


def _data(labels=TRUTH) -> Data:
    train = pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "colour": labels, "path": ""})
    none = pd.DataFrame(columns=["id", "path"])
    return Data(colours(), Items(Path("."), train, none, none, none), {"colour": CLASSES}, none)


def _probs(matrix, ids=None) -> Probabilities:
    matrix = np.asarray(matrix, dtype=np.float32)
    return Probabilities(ids or [f"r{i}" for i in range(len(matrix))], {"colour": matrix}, {"colour": CLASSES})


def _onehot(labels, confidence=0.9) -> np.ndarray:
    rest = (1 - confidence) / (len(CLASSES) - 1)
    return np.array([[confidence if c == label else rest for c in CLASSES] for label in labels])


def _recipe(**settings):
    return parse_recipe({"members": [{"name": "m", "arch": "resnet10t"}], **settings}, "t")


def _member(name, matrix, plain=None, tta=2, **settings) -> MemberOutput:
    """A member assessed as fit_member assesses it: `matrix` with TTA, `plain` without."""
    probs = _probs(matrix)
    plain = probs if plain is None else _probs(plain)
    part = _Part(probs, probs, None, False, plain, plain)
    return _assess(MemberOutput(name, probs, probs), [part], _recipe(tta=tta, **settings), _data())


# --- on the shared colours run: a member trained at lr 10 --------------------------------------------------


def test_a_member_trained_at_lr_10_is_flagged_and_left_out(colours_run):
    members = {m.name: m for m in colours_run.members}
    assert members["broken"].broken and not members["a"].broken and not members["b"].broken
    ens = colours_run.ensemble
    assert ens.members == ["a", "b"] and ens.excluded == ["broken"]
    expected = mean_probabilities([members["a"].valid, members["b"].valid])  # averaged without it
    np.testing.assert_allclose(ens.valid.tasks["colour"], expected.tasks["colour"], rtol=1e-6)
    record = json.loads((colours_run.folder / "run.json").read_text())
    assert record["metrics"]["excluded_members"] == ["broken"]
    assert record["metrics"]["members"]["broken"]["in_ensemble"] is False
    assert any("member broken is broken" in n and "left out of the ensemble" in n for n in record["notes"])
    saved = json.loads((colours_run.folder / "ensemble" / "ensemble.json").read_text())
    assert list(saved["weights"]) == ["a", "b"] and saved["excluded"] == ["broken"]
    assert "broken, left out" in colours_run.report.read_text()


def test_predict_leaves_out_what_the_run_left_out_and_uses_tta_where_the_run_did(colours_run, tmp_path):
    with registered():
        pack = load_pack(colours_run.folder)  # what `kagglekit predict` and `export` use
        exported = load_pack(export_pack(colours_run.folder, tmp_path / "pack").folder)
    assert [m.name for m in pack.members] == ["a", "b"]
    assert pack.weights == colours_run.ensemble.weights
    used = {m.name: m.tta_used for m in colours_run.members}  # tta = "auto": per member
    assert pack.tta == AUTO_TTA_PASSES
    assert (
        {m.name: m.tta_used for m in pack.members}
        == {m.name: m.tta_used for m in exported.members}
        == {name: used[name] for name in ("a", "b")}
    )


def test_each_member_records_its_tta_gain_and_the_constant_prediction(colours_run):
    metrics = json.loads((colours_run.folder / "run.json").read_text())["metrics"]
    for name, m in metrics["members"].items():
        assert m["valid_accuracy_tta"] is not None and m["valid_accuracy_no_tta"] is not None, name
        assert m["tta_gain"] == pytest.approx(m["valid_accuracy_tta"] - m["valid_accuracy_no_tta"])
        assert m["valid_accuracy"] == (m["valid_accuracy_tta"] if m["tta_used"] else m["valid_accuracy_no_tta"])
        assert m["tta_used"] == (m["tta_gain"] > 0)  # tta = "auto"
        assert m["constant_prediction_accuracy"] < 0.5  # the largest class's share of the held-out rows
    assert metrics["ensemble_valid_accuracy_no_tta"] is not None


# --- the rules, on made-up probabilities -------------------------------------------------------------------


def test_a_member_no_better_than_the_training_prior_is_broken():
    constant = _member("c", _onehot(["red"] * len(TRUTH), 0.5))
    assert constant.valid_score == pytest.approx(0.5) and constant.prior_score == pytest.approx(0.5)
    assert "no better than the constant prediction's 0.5000" in constant.broken
    assert _member("good", _onehot(TRUTH)).broken == ""
    diverged = _member("nan", np.full((len(TRUTH), 4), np.nan))
    assert diverged.valid_score is None and "not finite" in diverged.broken


def test_tta_auto_keeps_tta_only_where_it_beats_the_plain_pass():
    half_wrong = _onehot(TRUTH[:6] + ["red"] * 6)
    helps = _member("h", _onehot(TRUTH), plain=half_wrong, tta="auto")
    assert helps.tta_used and helps.tta_gain == pytest.approx(0.5) and helps.valid_score == 1.0
    hurts = _member("x", half_wrong, plain=_onehot(TRUTH), tta="auto")
    assert not hurts.tta_used and hurts.tta_gain == pytest.approx(-0.5) and hurts.valid_score == 1.0
    np.testing.assert_array_equal(hurts.valid.tasks["colour"], _probs(_onehot(TRUTH)).tasks["colour"])
    np.testing.assert_array_equal(hurts.test.tasks["colour"], _probs(_onehot(TRUTH)).tasks["colour"])
    always = _member("n", half_wrong, plain=_onehot(TRUTH), tta=2)  # a number of passes: TTA whatever it does
    assert always.tta_used and always.valid_score == pytest.approx(0.5) and always.tta_gain == pytest.approx(-0.5)
    none = _member("0", _onehot(TRUTH), tta=0)
    assert not none.tta_used and none.tta_score is None and none.plain_score == 1.0


def test_broken_members_are_left_out_unless_the_recipe_keeps_them(caplog):
    good, constant = _member("good", _onehot(TRUTH)), _member("constant", _onehot(["red"] * len(TRUTH), 0.5))
    with caplog.at_level(logging.WARNING):
        ens = ensemble_members([good, constant], _recipe(), _data())
    assert ens.members == ["good"] and ens.excluded == ["constant"] and ens.score == 1.0
    assert "keep_broken_members = true keeps it" in caplog.text
    kept = ensemble_members([good, constant], _recipe(keep_broken_members=True), _data())
    assert kept.members == ["good", "constant"] and not kept.excluded
    assert any("kept in the ensemble" in n for n in kept.notes)
    alone = ensemble_members([constant], _recipe(), _data())  # nothing better to fall back on: kept, and said
    assert alone.members == ["constant"] and any("every member is no better" in n for n in alone.notes)


def test_a_diverged_member_is_never_averaged():
    good, diverged = _member("good", _onehot(TRUTH)), _member("nan", np.full((len(TRUTH), 4), np.nan))
    assert ensemble_members([good, diverged], _recipe(keep_broken_members=True), _data()).members == ["good"]
    with pytest.raises(RecipeError, match="Every member .* diverged"):
        ensemble_members([diverged], _recipe(), _data())


def test_an_ensemble_below_its_best_member_says_so(caplog):
    good = _member("good", _onehot(TRUTH, 0.6))
    wrong = [_member(f"w{i}", _onehot(["yellow"] * len(TRUTH), 0.9)) for i in range(2)]
    for w in wrong:
        w.broken = ""  # scored below the prior, but say they passed: the ensemble guard is what is tested here
    with caplog.at_level(logging.WARNING):
        ens = ensemble_members([good, *wrong], _recipe(), _data())
    assert ens.best_member == ("good", 1.0) and ens.score < 1.0
    assert any("below its best member's (good, 1.0000)" in n for n in ens.notes) and "below its best" in caplog.text
    fine = ensemble_members([good, _member("also", _onehot(TRUTH))], _recipe(), _data())
    assert fine.score == 1.0 and not any("below its best" in n for n in fine.notes)


@pytest.mark.parametrize(("settings", "message"), [
    ({"tta": "sometimes"}, 'tta must be a number of passes >= 0 or "auto"'),
    ({"tta": -1}, "tta must be"),
    ({"members": [{"name": "m", "arch": "a", "lr": "fast"}]}, 'lr > 0 \\(or "find"\\)'),
    ({"members": [{"name": "m", "arch": "a", "stages": [{"size": 32, "epochs": 1, "lr": "find"}]}]},
     "a stage's lr must be a number"),
])  # fmt: skip
def test_recipe_values_of_the_new_keys_are_checked(settings, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"members": [{"name": "m", "arch": "a"}], **settings}, "t")
    recipe = parse_recipe({"tta": "auto", "keep_broken_members": True,
                           "members": [{"name": "m", "arch": "a", "lr": "find"}]}, "t")  # fmt: skip
    assert recipe.tta_passes == 4 and recipe.members[0].lr == "find"
