"""Winning-recipe options: progressive stages, offline weights, sampling, precision, split ensembles, k-fold."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from fastai.data.transforms import Normalize
from safetensors.torch import save_file
from spies import Watch

from kagglekit.data import load_items, vocabularies
from kagglekit.data.splits import make_splits
from kagglekit.ensemble import Probabilities, item_losses, mean_probabilities
from kagglekit.pipeline.job import run
from kagglekit.predict.tta import predict_member
from kagglekit.recipe import Member, RecipeError
from kagglekit.train import create_learner, make_dataloaders, make_heads, sampling_weights, train_member, weights_file
from kagglekit.train.learner import apply_precision
from kagglekit.train.schedule import schedule


@pytest.fixture(scope="module")
def items(paddy, paddy_sample):
    return load_items(paddy, paddy_sample.data_dir)


def test_schedule_generalises_fine_tune():
    scratch = schedule(Member(name="m", arch="a", epochs=3, lr=0.01))
    assert [(p.frozen, p.epochs, p.lr) for p in scratch] == [(False, 3, 0.01)]
    tuned = schedule(Member(name="m", arch="a", epochs=3, lr=0.01, pretrained=True))
    assert [(p.frozen, p.epochs) for p in tuned] == [(True, 1), (False, 3)]
    assert tuned[1].lr == slice(0.005 / 100, 0.005)  # fine_tune halves the rate and spreads it over the body
    staged = schedule(
        Member(name="m", arch="a", lr=0.01, stages=({"size": 32, "epochs": 2}, {"size": 64, "epochs": 1}))
    )
    assert [(p.stage, p.frozen, p.epochs) for p in staged] == [(0, False, 2), (1, True, 1), (1, False, 1)]


def test_stages_are_validated():
    with pytest.raises(RecipeError, match="each stage needs size and epochs"):
        Member(name="m", arch="a", stages=({"size": 32},))
    with pytest.raises(RecipeError, match="invalid stage"):
        Member(name="m", arch="a", stages=({"size": 32, "epochs": 1, "resize": "stretch"},))


def test_progressive_resizing_trains_at_each_size_and_ends_at_the_last(paddy, items, tmp_path):
    member = Member(name="m", arch="resnet10t", batch_size=16, lr=5e-3,
                    stages=({"size": 32, "epochs": 1}, {"size": [48, 40], "epochs": 1, "resize": "crop"}))  # fmt: skip
    splits = make_splits(items.train["id"], seed=0)
    watch = Watch()
    learn = train_member(
        member, paddy, items.train, splits["is_valid"], vocabularies(paddy, items), tmp_path, num_workers=0,
        cbs=[watch],
    )  # fmt: skip
    trained_at = {key: {shape[2:] for shape in shapes} for key, shapes in watch.shapes.items()}
    assert trained_at == {(0, 0): {(32, 32)}, (1, 0): {(48, 40)}, (2, 0): {(48, 40)}}  # stage 1, head re-fit, stage 2
    assert tuple(learn.dls.one_batch()[0].shape[2:]) == (48, 40)
    saved = json.loads((tmp_path / "member.json").read_text())
    assert saved["size"] == [48, 40] and saved["resize"] == "crop"
    assert [h["phase"] for h in saved["history"]] == [0, 1, 2]  # stage 1, head re-fit, stage 2


def test_offline_weights_file_or_folder_load_with_timm_normalisation(paddy, items, tmp_path):
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    torch.nn.init.normal_(reference.conv1[0].weight)
    save_file(reference.state_dict(), tmp_path / "resnet10t.safetensors")
    assert weights_file(str(tmp_path), "resnet10t") == tmp_path / "resnet10t.safetensors"
    for pretrained in (str(tmp_path / "resnet10t.safetensors"), str(tmp_path)):
        member = Member(name="m", arch="resnet10t", size=32, batch_size=16, pretrained=pretrained)
        heads = make_heads(paddy, vocabularies(paddy, items), member)
        dls = make_dataloaders(items.train, make_splits(items.train["id"])["is_valid"], heads, member, num_workers=0)
        learn = create_learner(dls, member, heads)
        torch.testing.assert_close(learn.model[0].model.conv1[0].weight, reference.conv1[0].weight)
        (norm,) = [t for t in learn.dls.after_batch.fs if isinstance(t, Normalize)]
        np.testing.assert_allclose(norm.mean.flatten().cpu().numpy(), reference.default_cfg["mean"], rtol=1e-6)
    with pytest.raises(RecipeError, match="do not exist"):
        weights_file(str(tmp_path / "missing.safetensors"), "resnet10t")


def test_sampling_weights(items):
    member = Member(name="m", arch="a", sampling="balanced")
    weights = sampling_weights(member, items.train, "label", None)
    per_class = pd.Series(weights).groupby(items.train["label"].to_numpy()).sum()
    np.testing.assert_allclose(per_class.to_numpy(), 1.0)  # every class drawn equally often
    losses = pd.Series(np.linspace(0.1, 2, len(items.train)), index=items.train["id"])
    by_loss = sampling_weights(Member(name="m", arch="a", sampling="loss"), items.train, "label", losses)
    assert np.argmax(by_loss) == len(items.train) - 1
    with pytest.raises(RecipeError, match="needs an earlier member"):
        sampling_weights(Member(name="m", arch="a", sampling="loss"), items.train, "label", None)


def test_item_losses():
    probs = np.array([[0.9, 0.1], [0.5, 0.5]])
    np.testing.assert_allclose(item_losses(probs, ["a", "b"], ["a", "b"], "single"), [-np.log(0.9), -np.log(0.5)])
    multi = item_losses(np.array([[0.9, 0.2]]), ["a"], ["a", "b"], "multi")
    np.testing.assert_allclose(multi, [-(np.log(0.9) + np.log(0.8)) / 2])


def test_mixed_precision_is_ignored_with_a_note_on_cpu(paddy, items):
    member = Member(name="m", arch="resnet10t", size=32, batch_size=16, precision="fp16", channels_last=True)
    heads = make_heads(paddy, vocabularies(paddy, items), member)
    dls = make_dataloaders(items.train, make_splits(items.train["id"])["is_valid"], heads, member, num_workers=0)
    learn = create_learner(dls, member, heads)
    notes = apply_precision(learn, member)
    assert any("fp16 ignored on the CPU" in n for n in notes) and any("channels_last" in n for n in notes)
    assert not any(type(cb).__name__ == "MixedPrecision" for cb in learn.cbs)


def test_ensemble_of_members_with_disjoint_validation_rows_has_no_rows():
    a = Probabilities(["x"], {"t": np.array([[1.0, 0.0]])}, {"t": ["a", "b"]})
    b = Probabilities(["y"], {"t": np.array([[1.0, 0.0]])}, {"t": ["a", "b"]})
    assert mean_probabilities([a, b]).ids == []


@pytest.mark.slow
def test_kfold_and_split_seed_members_are_scored_honestly(paddy, paddy_sample, tmp_path, monkeypatch):
    learners = {}  # part folder -> the learner trained there

    def keep_learner(member, competition, train, is_valid, vocab, out_dir, *args, **kwargs):
        learners[out_dir.name] = train_member(member, competition, train, is_valid, vocab, out_dir, *args, **kwargs)
        return learners[out_dir.name]

    monkeypatch.setattr("kagglekit.train.member.train_member", keep_learner)
    recipe = tmp_path / "folds.toml"
    recipe.write_text(
        "valid_pct = 0.3\nseed = 3\ntta = 0\n[defaults]\nsize = 32\nepochs = 1\nbatch_size = 16\n"
        '[[members]]\nname = "folds"\narch = "resnet10t"\nfolds = 2\n'
        '[[members]]\nname = "own-split"\narch = "resnet10t"\nsplit_seed = 11\ntasks = { label = 1.0, variety = 0.5 }\n'
    )
    result = run(paddy, recipe, data=paddy_sample.data_dir, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "s")
    folds, own = result.members
    n_train = len(load_items(paddy, paddy_sample.data_dir).train)
    assert folds.valid_rows == n_train  # out-of-fold: every row predicted by the fold model that did not train on it
    own_split = pd.read_csv(result.folder / "splits-seed11.csv")
    assert own.valid_rows == own_split["is_valid"].sum()
    assert result.ensemble.rows == own.valid_rows  # only rows held out from both members
    assert set(own.task_scores) == {"label", "variety"}
    member_dir = result.folder / "members"
    assert (member_dir / "folds" / "fold0" / "model.safetensors").is_file()
    assert (member_dir / "folds" / "fold1" / "model.safetensors").is_file()
    oof = Probabilities.load(member_dir / "folds", "valid")
    folds = pd.read_csv(result.folder / "folds-k2-seed3.csv", dtype={"id": str})
    assert sorted(oof.ids) == sorted(folds["id"])
    for k in (0, 1):  # fold k's model: trained on the other fold only, validated on fold k, which it predicted
        learn, other = learners[f"fold{k}"], learners[f"fold{1 - k}"]
        trained_on, validated_on = set(learn.dls.train.items["id"]), set(learn.dls.valid.items["id"])
        assert validated_on == set(folds.loc[folds["fold"] == k, "id"])
        assert not trained_on & validated_on and trained_on <= set(folds.loc[folds["fold"] != k, "id"])
        rows = learn.dls.valid.items  # as prepared for training (cache entries), in the loader's order
        mine, theirs = (predict_member(m, rows, 0).tasks["label"] for m in (learn, other))
        position = {i: n for n, i in enumerate(oof.ids)}
        out_of_fold = oof.tasks["label"][[position[i] for i in rows["id"]]]
        np.testing.assert_allclose(out_of_fold, mine, rtol=1e-4, atol=1e-6)
        assert not np.allclose(out_of_fold, theirs, atol=1e-3), "predicted by the model that trained on the rows"
    assert (member_dir / "own-split" / "valid_variety.csv.gz").is_file()
    assert not list(result.folder.rglob("checkpoint.*")), "checkpoints are removed once predictions are saved"
    assert result.check.ok


@pytest.mark.parametrize("watched", [False, True])
def test_progress_is_one_line_per_epoch_unless_someone_watches(paddy, items, tmp_path, monkeypatch, caplog, watched):
    from fastai.callback.progress import ProgressCallback

    from kagglekit.train import progress

    monkeypatch.setattr(progress, "interactive", lambda: watched)
    member = Member(name="m", arch="resnet10t", size=32, epochs=2, batch_size=16)
    split = make_splits(items.train["id"], valid_pct=0.25, seed=0)
    vocab = vocabularies(paddy, items)
    with caplog.at_level(logging.INFO, logger="kagglekit.train.progress"):
        learn = train_member(member, paddy, items.train, split, vocab, tmp_path / "m")
    lines = [r.getMessage() for r in caplog.records if r.name == "kagglekit.train.progress"]
    assert any(isinstance(cb, ProgressCallback) for cb in learn.cbs) == watched
    if watched:
        assert lines == []
    else:
        assert [line.split(":")[0] for line in lines] == ["m epoch 1/2", "m epoch 2/2"]
        assert all("train_loss" in line and "valid_loss" in line and "label_accuracy" in line for line in lines)
