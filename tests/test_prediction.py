"""TTA as a running mean, and ensembles as (weighted) means of probabilities."""

import numpy as np
import pandas as pd
import pytest
import torch

from kagglekit.data import load_items, vocabularies
from kagglekit.data.splits import make_splits
from kagglekit.ensemble import Probabilities, mean_probabilities
from kagglekit.predict.tta import predict_member
from kagglekit.recipe import Member
from kagglekit.train import create_learner, make_dataloaders, make_heads


@pytest.fixture(scope="module")
def learner(paddy, paddy_sample):
    items = load_items(paddy, paddy_sample.data_dir)
    member = Member(name="m", arch="resnet10t", size=32, resize="crop", aug="default", batch_size=16)
    heads = make_heads(paddy, vocabularies(paddy, items), member)
    splits = make_splits(items.train["id"], seed=0)
    dls = make_dataloaders(items.train, splits["is_valid"], heads, member, num_workers=0)
    return create_learner(dls, member, heads), items


def test_tta_is_the_mean_of_augmented_passes_and_the_plain_pass(learner, monkeypatch):
    learn, items = learner
    passes = []
    real_get_preds = learn.get_preds

    def spy(*args, **kwargs):
        preds, targets = real_get_preds(*args, **kwargs)
        passes.append(preds.clone())
        return preds, targets

    monkeypatch.setattr(learn, "get_preds", spy)
    torch.manual_seed(0)
    probs = predict_member(learn, items.test, n_tta=3)
    assert len(passes) == 4
    manual = torch.stack(passes).double().mean(0).numpy()
    np.testing.assert_allclose(probs.tasks["label"], manual, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(passes[0], passes[3]), "augmented passes must differ from the plain pass"
    np.testing.assert_allclose(probs.tasks["label"].sum(1), 1, atol=1e-5)
    assert probs.ids == items.test["id"].tolist()


def test_zero_tta_is_the_plain_prediction(learner):
    learn, items = learner
    plain = predict_member(learn, items.test, n_tta=0)
    again = predict_member(learn, items.test, n_tta=0)
    np.testing.assert_allclose(plain.tasks["label"], again.tasks["label"], rtol=1e-6)


def _probs(ids, rows, vocab=("a", "b")):
    return Probabilities(list(ids), {"t": np.asarray(rows, dtype=np.float32)}, {"t": list(vocab)})


def test_ensemble_averages_probabilities_aligned_by_id():
    one = _probs(["x", "y"], [[0.9, 0.1], [0.2, 0.8]])
    two = _probs(["y", "x"], [[0.6, 0.4], [0.5, 0.5]])  # same ids, other order
    mean = mean_probabilities([one, two])
    assert mean.ids == ["x", "y"]
    np.testing.assert_allclose(mean.tasks["t"], [[0.7, 0.3], [0.4, 0.6]], rtol=1e-6)
    weighted = mean_probabilities([one, two], weights=[3, 1])
    np.testing.assert_allclose(weighted.tasks["t"], [[0.8, 0.2], [0.3, 0.7]], rtol=1e-6)


def test_ensemble_is_not_a_majority_vote():
    confident = _probs(["x"], [[0.01, 0.99]])
    lukewarm = _probs(["x"], [[0.6, 0.4]])
    assert mean_probabilities([confident, lukewarm, lukewarm]).tasks["t"].argmax() == 1  # a vote would say class 0


def test_ensemble_refuses_members_with_different_classes():
    with pytest.raises(ValueError, match="disagree on the classes"):
        mean_probabilities([_probs(["x"], [[1, 0]]), _probs(["x"], [[1, 0]], vocab=("b", "a"))])
    with pytest.raises(ValueError, match="non-negative weight"):
        mean_probabilities([_probs(["x"], [[1, 0]])], weights=[-1])


def test_probabilities_round_trip(tmp_path):
    probs = _probs(["x", "007"], [[0.25, 0.75], [0.5, 0.5]])
    probs.save(tmp_path, "test")
    loaded = Probabilities.load(tmp_path, "test")
    assert loaded.ids == ["x", "007"]
    np.testing.assert_allclose(loaded.tasks["t"], probs.tasks["t"])
    assert loaded.vocab == probs.vocab
    assert pd.read_csv(tmp_path / "test_ids.csv", dtype=str)["id"].tolist() == ["x", "007"]
