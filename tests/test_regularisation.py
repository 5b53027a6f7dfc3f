"""EMA, mixup/cutmix, label smoothing and checkpoint averaging each change what they claim."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.torch_core import TensorCategory, TensorImage, TensorMultiCategory
from safetensors.torch import load_file
from spies import Watch

from kagglekit import get_competition
from kagglekit.data import load_items, vocabularies
from kagglekit.data.splits import make_splits
from kagglekit.recipe import Member, RecipeError, parse_recipe
from kagglekit.train import make_heads, mean_weights, train_member
from kagglekit.train.heads import Head, TaskLoss, place_heads
from kagglekit.train.mixing import Mixing, soft_targets


@pytest.fixture(scope="module")
def data(paddy, paddy_sample):
    items = load_items(paddy, paddy_sample.data_dir)
    return items.train, make_splits(items.train["id"], valid_pct=0.25, seed=0), vocabularies(paddy, items)


def _train(paddy, data, folder, member, cbs=()):
    train, split, vocab = data
    return train_member(member, paddy, train, split, vocab, folder, seed=1, num_workers=0, cbs=cbs)


def _floats(state: dict) -> dict:
    return {k: v for k, v in state.items() if v.is_floating_point()}


# --- EMA -------------------------------------------------------------------------------------------------------


def test_ema_weights_are_the_hand_computed_average_and_what_is_validated_and_saved(paddy, data, tmp_path):
    decay = 0.9
    member = Member(name="m", arch="resnet10t", size=32, epochs=2, batch_size=16, ema=decay)
    watch = Watch()
    learn = _train(paddy, data, tmp_path, member, cbs=[watch])
    assert len(watch.step_weights) >= 6
    average = None
    for step, weights in enumerate(watch.step_weights, start=1):  # the raw weights after each optimizer step
        d = 0.0 if step == 1 else min(decay, 1 - step ** (-3 / 4))  # timm's warm-up: 1 - (1 + (step - 1))^-3/4
        average = _floats(weights) if average is None else {k: d * average[k] + (1 - d) * weights[k] for k in average}
    saved = load_file(tmp_path / "model.safetensors")
    raw = watch.step_weights[-1]
    for key, value in average.items():  # parameters and batch-norm running statistics alike
        torch.testing.assert_close(saved[key], value, rtol=1e-4, atol=1e-6, msg=key)
    bn_mean = "0.model.conv1.1.running_mean"
    assert not torch.allclose(saved[bn_mean], raw[bn_mean]), "the average differs from the raw weights"
    assert not torch.allclose(saved["1.8.weight"], raw["1.8.weight"])
    history = json.loads((tmp_path / "member.json").read_text())["history"]
    valid_loss = float(learn.validate()[0])  # the learner holds the average, which the last epoch validated
    assert history[-1]["valid_loss"] == pytest.approx(valid_loss, rel=1e-5)


def test_ema_steps_once_per_effective_batch(paddy, data, tmp_path):
    member = Member(name="m", arch="resnet10t", size=32, epochs=1, batch_size=16, accum=2, ema=0.9)
    watch = Watch()
    _train(paddy, data, tmp_path, member, cbs=[watch])
    state = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert state["parts"]["ema"]["steps"] == sum(watch.steps.values()) == sum(watch.batches.values()) // 2


# --- mixup, cutmix, label smoothing ------------------------------------------------------------------------------

HEADS = place_heads([
    {"task": "label", "column": "label", "kind": "single", "vocab": ["a", "b", "c"], "weight": 1.0},
    {"task": "variety", "column": "variety", "kind": "single", "vocab": ["x", "y"], "weight": 0.5},
])  # fmt: skip
TAGS = place_heads([{"task": "tags", "column": "tags", "kind": "multi", "vocab": ["p", "q", "r", "s"], "weight": 1.0}])


def _batch(heads: list[Head], n: int = 6):
    torch.manual_seed(0)
    x = TensorImage(torch.rand(n, 3, 16, 12))
    targets = [
        TensorCategory(torch.randint(0, len(h.vocab), (n,)))
        if h.kind == "single"
        else TensorMultiCategory((torch.rand(n, len(h.vocab)) > 0.5).float())
        for h in heads
    ]
    return x, targets, torch.randn(n, sum(len(h.vocab) for h in heads))


@pytest.mark.parametrize("heads", [HEADS, TAGS], ids=["multi-task", "multi-label"])
@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_a_mixed_batch_loss_equals_the_hand_mixed_loss_for_every_head(heads, kind):
    x, targets, logits = _batch(heads)
    member = Member(name="m", arch="a", **{kind: 1.0})
    mixing = Mixing(member, heads)
    np.random.seed(3)
    mixed_x, mixed_targets = mixing.mix(x, targets)
    lam = mixing.lam
    assert 0 < lam < 1
    loss = TaskLoss(heads)
    expected = lam * loss(logits, *targets) + (1 - lam) * loss(logits, *[t.flip(0) for t in targets])
    torch.testing.assert_close(loss(logits, *mixed_targets), expected)
    if kind == "mixup":
        torch.testing.assert_close(mixed_x, x * lam + x.flip(0) * (1 - lam))
    else:  # the pasted box comes from the reversed batch; lambda is the share of each image left
        kept = (mixed_x == x).all(1).float().mean((1, 2))
        torch.testing.assert_close(kept, torch.full_like(kept, lam))
        assert ((mixed_x == x) | (mixed_x == x.flip(0))).all()


def test_label_smoothing_targets_match_cross_entropys_own_smoothing():
    _, targets, logits = _batch(HEADS)
    soft = soft_targets(HEADS, targets, smoothing=0.1)
    assert soft[0].sum(1).allclose(torch.ones(6)) and soft[0].min() == pytest.approx(0.1 / 3)
    smoothed = F.cross_entropy(logits[:, :3], targets[0], label_smoothing=0.1)
    smoothed = smoothed + 0.5 * F.cross_entropy(logits[:, 3:], targets[1], label_smoothing=0.1)
    torch.testing.assert_close(TaskLoss(HEADS)(logits, *soft), smoothed)


def test_mixing_is_wired_into_training_and_stops_for_the_last_epochs(paddy, data, tmp_path):
    member = Member(name="m", arch="resnet10t", size=32, epochs=3, batch_size=16, mixup=0.4, mix_off_epochs=1,
                    tasks={"label": 1.0, "variety": 0.5})  # fmt: skip
    watch = Watch()
    _train(paddy, data, tmp_path, member, cbs=[watch])
    for (_, epoch), batches in watch.targets.items():
        for label, variety in batches:
            if epoch < 2:  # mixed: probabilities, mostly not one-hot, the same mix for both heads
                assert label.ndim == variety.ndim == 2 and label.sum(1).allclose(torch.ones(len(label)))
            else:
                assert label.ndim == variety.ndim == 1
    soft = [label for (_, epoch), batches in watch.targets.items() if epoch < 2 for label, _ in batches]
    assert any(((t > 0) & (t < 1)).any() for t in soft)


def test_label_smoothing_is_wired_into_training_and_not_into_validation(paddy, data, tmp_path):
    member = Member(name="m", arch="resnet10t", size=32, epochs=1, batch_size=16, label_smoothing=0.2)
    watch = Watch()
    learn = _train(paddy, data, tmp_path, member, cbs=[watch])
    n = len(data[2]["label"])
    for (label,) in watch.targets[(0, 0)]:
        assert label.ndim == 2 and label.min() == pytest.approx(0.2 / n)
    probs, truth = learn.get_preds(ds_idx=1)  # validation: the plain log loss, not the smoothed one
    plain = F.nll_loss(probs.log(), truth.as_subclass(torch.Tensor)).item()
    history = json.loads((tmp_path / "member.json").read_text())["history"]
    assert history[-1]["valid_loss"] == pytest.approx(plain, rel=1e-4)


def test_label_smoothing_on_a_multi_label_head_is_an_error_naming_the_member():
    planet = get_competition("planet")
    member = Member(name="tags", arch="resnet18", label_smoothing=0.1)
    with pytest.raises(RecipeError, match="member 'tags': label_smoothing is for single-label heads"):
        make_heads(planet, {"tags": ["clear", "haze"]}, member)


def test_a_run_refuses_label_smoothing_on_multi_label_before_reading_any_data(tmp_path):
    from kagglekit.pipeline.job import run

    recipe = tmp_path / "smooth.toml"
    recipe.write_text('[[members]]\nname = "tags"\narch = "resnet18"\nlabel_smoothing = 0.1\n')
    with pytest.raises(RecipeError, match="member 'tags': label_smoothing is for single-label heads; tags is multi"):
        run("planet", recipe, data=tmp_path / "no-data-here")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"ema": 1.5}, "ema is the decay"),
        ({"ema": True}, "ema is the decay"),
        ({"mixup": -0.2}, "mixup is a Beta distribution's alpha"),
        ({"mix_prob": 0}, "mix_prob"),
        ({"mixup": 0.2, "mix_off_epochs": 5}, "mix_off_epochs must be an integer from 0 to 4"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"average_checkpoints": 6}, "average_checkpoints is how many of the last phase's 5 epochs"),
        ({"average_checkpoints": 2, "average_mode": "best"}, "average_mode must be uniform or greedy"),
    ],
)
def test_bad_settings_are_errors_naming_the_member(settings, message):
    with pytest.raises(RecipeError, match=f"#1: member 'm': {message}"):
        parse_recipe({"members": [{"name": "m", "arch": "resnet18", "epochs": 5, **settings}]}, "r")


def test_a_misspelt_setting_is_an_error():
    with pytest.raises(RecipeError, match="unknown key.*emma"):
        parse_recipe({"members": [{"name": "m", "arch": "resnet18", "emma": 0.99}]}, "r")


# --- checkpoint averaging ------------------------------------------------------------------------------------------


def test_averaged_weights_are_the_mean_of_the_best_epochs(paddy, data, tmp_path):
    member = Member(name="m", arch="resnet10t", size=32, epochs=4, batch_size=16, lr=1e-2, average_checkpoints=2)
    watch = Watch()
    learn = _train(paddy, data, tmp_path, member, cbs=[watch])
    best = sorted(watch.valid_loss, key=watch.valid_loss.get)[:2]
    expected = mean_weights([watch.weights[key] for key in best])
    saved = load_file(tmp_path / "model.safetensors")
    for key, value in _floats(expected).items():
        torch.testing.assert_close(saved[key], value, rtol=1e-5, atol=1e-7, msg=key)
    record = json.loads((tmp_path / "member.json").read_text())
    assert [(e["phase"], e["epoch"]) for e in record["averaged"]["epochs"]] == best
    assert record["averaged"]["valid_loss"] == pytest.approx(float(learn.validate()[0]), rel=1e-5)
    assert {"valid_loss", "label_accuracy"} <= set(record["history"][-1]) & set(record["averaged"])


def test_mean_weights_is_entry_wise_and_keeps_counters():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    mean = mean_weights([a, b])
    torch.testing.assert_close(mean["w"], torch.tensor([2.0, 4.0]))
    assert mean["n"] == 3


def test_greedy_averaging_keeps_only_epochs_that_improve_validation(paddy, data, tmp_path):
    member = Member(name="m", arch="resnet10t", size=32, epochs=4, batch_size=16, lr=1e-2,
                    average_checkpoints=4, average_mode="greedy")  # fmt: skip
    watch = Watch()
    _train(paddy, data, tmp_path, member, cbs=[watch])
    record = json.loads((tmp_path / "member.json").read_text())
    ranked = sorted(watch.valid_loss, key=watch.valid_loss.get)
    chosen = [(e["phase"], e["epoch"]) for e in record["averaged"]["epochs"]]
    assert chosen[0] == ranked[0] and set(chosen) <= set(ranked)
    assert record["averaged"]["valid_loss"] <= watch.valid_loss[ranked[0]] + 1e-6
    expected = mean_weights([watch.weights[key] for key in chosen])
    saved = load_file(tmp_path / "model.safetensors")
    torch.testing.assert_close(saved["1.8.weight"], expected["1.8.weight"], rtol=1e-5, atol=1e-7)


# --- end to end --------------------------------------------------------------------------------------------------

EVERY_SETTING = """
valid_pct = 0.25
seed = 2
tta = 0
[defaults]
arch = "resnet10t"
size = 32
batch_size = 16
epochs = 2
[[members]]
name = "ema-mixed"
ema = 0.99
mixup = 0.2
cutmix = 1.0
mix_off_epochs = 1
{smoothing}
accum = 2
{tasks}
stages = [{{ size = 32, epochs = 2 }}, {{ size = 40, epochs = 2 }}]
[[members]]
name = "averaged"
folds = 2
average_checkpoints = 2
average_mode = "greedy"
"""


@pytest.mark.slow
@pytest.mark.parametrize("competition", ["paddy", "planet"])
def test_every_setting_runs_end_to_end_and_exports_what_it_validated(competition, tmp_path):
    from kagglekit.pipeline.job import run
    from kagglekit.predict.files import predict_files
    from kagglekit.samples import write_sample

    comp = get_competition(competition)
    sample = write_sample(comp, tmp_path / "data", seed=4, n_train=60, n_test=8)
    recipe = tmp_path / "every.toml"
    multi_task = competition == "paddy"  # paddy: two single-label heads; planet: one multi-label head
    recipe.write_text(EVERY_SETTING.format(smoothing="label_smoothing = 0.1" if multi_task else "",
                                           tasks="tasks = { label = 1.0, variety = 0.5 }" if multi_task else ""))  # fmt: skip
    result = run(comp, recipe, data=sample.data_dir, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "subs")
    assert result.check.ok
    record = json.loads((result.folder / "run.json").read_text())["metrics"]["members"]
    assert set(record["averaged"]["last_epoch_accuracy_no_tta"]) == {comp.target_task}
    assert "last_epoch_accuracy_no_tta" not in record["ema-mixed"]
    for part in ("fold0", "fold1"):
        saved = json.loads((result.folder / "members" / "averaged" / part / "member.json").read_text())
        assert saved["averaged"]["mode"] == "greedy" and saved["member"]["average_checkpoints"] == 2
    assert not list(result.folder.rglob("checkpoint*")) and not list(result.folder.rglob("averaging"))
    test_dir = sample.data_dir / ("test_images" if competition == "paddy" else "test-jpg")
    paths = sorted(test_dir.glob("*.jpg"))[:4]
    # the saved (averaged) weights, rebuilt from the run folder's files, on the original images
    exported = predict_files(result.folder, paths).probabilities
    position = {i: n for n, i in enumerate(result.ensemble.test.ids)}
    rows = [position[p.name.removesuffix(".jpg") if competition == "planet" else p.name] for p in paths]
    np.testing.assert_allclose(exported.tasks[comp.target_task], result.ensemble.test.tasks[comp.target_task][rows],
                               rtol=0, atol=1e-5)  # fmt: skip
