"""Label corrections: `id,action,label` rows change the training table exactly as marked, are recorded with the
run, and never touch the user's files."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from colours import colours

from kagglekit import get_competition
from kagglekit.data.corrections import apply_corrections, read_corrections
from kagglekit.errors import DataError
from kagglekit.pipeline.job import run
from kagglekit.report.run_files import run_data

TRAIN = pd.DataFrame({"id": ["a", "b", "c", "d"], "colour": ["red", "red", "blue", "green"],
                      "path": ["/a.png", "/b.png", "/c.png", "/d.png"]})  # fmt: skip
VOCAB = {"colour": ["blue", "green", "red", "yellow"]}


def _csv(tmp_path, text: str):
    path = tmp_path / "corrections.csv"
    path.write_text(text)
    return path


def test_the_training_table_changes_exactly_as_marked(tmp_path):
    marked = read_corrections(_csv(tmp_path, "id,action,label,note\nb,exclude,,dup\nc,relabel,yellow,\nd,,,kept\n"))
    assert marked[["id", "action", "label", "line"]].values.tolist() == [["b", "exclude", "", 2],
                                                                         ["c", "relabel", "yellow", 3]]  # fmt: skip
    corrected, changed = apply_corrections(TRAIN, marked, colours(), VOCAB)
    expected = pd.DataFrame({"id": ["a", "c", "d"], "colour": ["red", "yellow", "green"],
                             "path": ["/a.png", "/c.png", "/d.png"]})  # fmt: skip
    pd.testing.assert_frame_equal(corrected, expected)
    assert changed.values.tolist() == [["b", "exclude", "red", ""], ["c", "relabel", "blue", "yellow"]]
    assert TRAIN["colour"].tolist() == ["red", "red", "blue", "green"]  # the input table is not modified


@pytest.mark.parametrize(("text", "message"), [
    ("id,label\na,red\n", "missing column\\(s\\) action"),
    ("id,action,label\na,drop,\n", "line 2 \\(a\\): unknown action 'drop'; use exclude or relabel"),
    ("id,action,label\na,relabel,\n", "line 2 \\(a\\): relabel needs the new label"),
    ("id,action,label\na,exclude,\nb,exclude,\na,relabel,red\n", "line 4: id 'a' is marked more than once"),
])  # fmt: skip
def test_a_bad_corrections_file_names_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_corrections(_csv(tmp_path, text))


def test_unknown_ids_and_labels_are_refused_with_their_line(tmp_path):
    marked = read_corrections(_csv(tmp_path, "id,action,label\nzz,exclude,\nc,relabel,purple\n"))
    with pytest.raises(DataError, match="line 2: id 'zz' is not a training row; line 3 \\(c\\): label purple"):
        apply_corrections(TRAIN, marked, colours(), VOCAB)
    planet = get_competition("planet")
    tags = pd.DataFrame({"id": ["p"], "tags": ["clear primary"], "path": [""]})
    marked = read_corrections(_csv(tmp_path, "id,action,label\np,relabel,haze primary road\n"))
    assert apply_corrections(tags, marked, planet, {"tags": ["clear", "haze", "primary", "road"]})[0]["tags"][0] == (
        "haze primary road"
    )
    with pytest.raises(DataError, match="label rainbow is not among"):
        apply_corrections(tags, marked.assign(label="haze rainbow"), planet, {"tags": ["clear", "haze", "primary"]})


RECIPE = """
valid_pct = 0.25
seed = 1
tta = 0
[[members]]
name = "only"
arch = "resnet10t"
size = 32
epochs = 1
batch_size = 16
"""


def test_a_run_applies_records_and_never_edits_the_data(colours_sample, tmp_path):
    sample, planted = colours_sample
    train_csv = sample.data_dir / "train.csv"
    digest = hashlib.sha256(train_csv.read_bytes()).hexdigest()
    original = pd.read_csv(train_csv, dtype=str)
    relabel = {i: true for i, (_, true) in planted.items()}
    excluded = original["id"][~original["id"].isin(planted)].iloc[:3].tolist()
    rows = [*(f"{i},relabel,{c}" for i, c in relabel.items()), *(f"{i},exclude," for i in excluded)]
    corrections = _csv(tmp_path, "id,action,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "r.toml").write_text(RECIPE)
    result = run(colours(), tmp_path / "r.toml", data=sample.data_dir, runs_dir=tmp_path / "runs",
                 submissions_dir=tmp_path / "subs", corrections=corrections, report=False)  # fmt: skip
    assert hashlib.sha256(train_csv.read_bytes()).hexdigest() == digest
    record = json.loads((result.folder / "run.json").read_text())
    assert [(c["id"], c["action"], c["label"]) for c in record["config"]["corrections"]] == [
        *((i, "relabel", c) for i, c in relabel.items()), *((i, "exclude", "") for i in excluded)]  # fmt: skip
    assert record["config"]["corrections_file"] == str(corrections.resolve())
    assert record["metrics"]["corrections"] == {"exclude": 3, "relabel": len(planted)}
    trained = run_data(result.folder, competition=colours()).items.train  # the table as the run recorded it
    expected = original[~original["id"].isin(excluded)].set_index("id")["colour"].copy()
    expected.update(pd.Series(relabel))
    assert trained.set_index("id")["colour"].to_dict() == expected.to_dict()
    splits = pd.read_csv(result.folder / "splits.csv", dtype={"id": str})
    assert set(splits["id"]) == set(expected.index)  # the members split (and trained on) exactly these rows
    applied = pd.read_csv(result.folder / "corrections_applied.csv", dtype=str, keep_default_na=False)
    assert applied["old_label"].tolist()[: len(planted)] == [given for given, _ in planted.values()]
