"""The learning-rate finder: fastai's lr_find on a member's real loaders, `kagglekit lr-find`, and `lr = "find"`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pyte
import pytest
import torch
from colours import colours
from fastai.torch_core import set_seed
from PIL import Image
from typer.testing import CliRunner

from kagglekit.cli import app
from kagglekit.data.splits import make_splits
from kagglekit.errors import RecipeError
from kagglekit.pipeline.data import prepare_data
from kagglekit.pipeline.job import run
from kagglekit.recipe import Member
from kagglekit.train import create_learner, make_dataloaders, make_heads
from kagglekit.train import lr_find as lr_find_module
from kagglekit.train.lr_find import LRFinding, find_lr, lr_find_member, resolve_lr, suggestions
from kagglekit.train.mixing import Mixing

LRS = np.logspace(-7, 1, 100)


START = 1e-5  # where the loss of `_curve` starts to fall


def _curve(best: float) -> np.ndarray:
    """A range test's typical loss: flat until `START`, falling steadily (in log lr) to its minimum at `best`,
    then diverging fast."""
    x = np.log10(LRS)
    falling = 2.5 - 1.5 * (x - np.log10(START)) / (np.log10(best) - np.log10(START))
    return np.where(LRS < START, 2.5, np.where(x <= np.log10(best), falling, 1.0 + 8 * (x - np.log10(best)) ** 2))


@pytest.mark.parametrize("best", [1e-3, 3e-2])
def test_valley_and_slide_fall_on_the_descent_before_the_minimum(best):
    valley, slide = suggestions(LRS.tolist(), _curve(best).tolist(), num_it=100)
    assert START < valley < best and START < slide < best
    middle = np.sqrt(START * best)  # fastai's valley: half way down the longest descent
    assert middle / 3 < valley < middle * 3


def test_a_nan_tail_is_cut_and_a_curve_too_short_is_a_recipe_error():
    losses = _curve(1e-2)
    losses[70:] = np.nan  # the loss overflowed: fastai cuts the window at the first NaN
    valley, _ = suggestions(LRS.tolist(), losses.tolist(), num_it=100)
    assert valley < LRS[70]
    with pytest.raises(RecipeError, match="stopped after 14 of 100 batches"):
        suggestions(LRS[:14].tolist(), _curve(1e-2)[:14].tolist(), num_it=100)


@pytest.fixture(scope="module")
def colours_data(colours_sample):
    sample, _ = colours_sample
    return prepare_data(colours(), sample.data_dir)


def test_find_lr_restores_the_weights_and_leaves_no_files(colours_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The same weights and batches whatever ran before: a tiny model's batch losses vary enough that fastai's
    # divergence stop (4 x the best loss) can end an unseeded 30-batch test after a few batches.
    set_seed(0, reproducible=True)
    member = Member(name="m", arch="resnet10t", size=32, batch_size=8)
    train = colours_data.items.train
    heads = make_heads(colours_data.competition, colours_data.vocab, member)
    dls = make_dataloaders(train, make_splits(train["id"], 0.25, 1)["is_valid"], heads, member, num_workers=0)
    learn = create_learner(dls, member, heads)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    finding = find_lr(learn, num_it=30)
    assert len(finding.lrs) > 20 and np.all(np.diff(finding.lrs) > 0) and 1e-7 < finding.valley < 10
    for key, value in learn.model.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    assert list(tmp_path.iterdir()) == []  # fastai's LRFinder parks weights in models/: not in the working folder


def test_resolve_lr_reuses_a_saved_finding(tmp_path, monkeypatch):
    saved = LRFinding([1e-5, 1e-3, 1e-1], [2.0, 1.0, 3.0], valley=4e-4, slide=2e-4, member="m")
    paths = saved.save(tmp_path)
    assert Image.open(paths["plot"]).size[0] > 100
    assert pd.read_csv(paths["table"]).columns.tolist() == ["lr", "loss"]
    monkeypatch.setattr(lr_find_module, "find_lr", lambda *a, **k: pytest.fail("found again"))
    resolved = resolve_lr(None, Member(name="m", arch="a", lr="find"), tmp_path)
    assert resolved.lr == 4e-4 and resolve_lr(None, Member(name="m", arch="a", lr=0.1), tmp_path).lr == 0.1


class Body:
    """Stands in for a learner where only freezing matters."""

    def __init__(self):
        self.frozen = None

    def freeze(self):
        self.frozen = True

    def unfreeze(self):
        self.frozen = False


def test_resolve_lr_finds_again_for_another_configuration_as_the_first_phase_trains(tmp_path, monkeypatch):
    found = []

    def finding(learn, *args, **kwargs):
        found.append(learn.frozen)
        return LRFinding([1e-5, 1e-3], [2.0, 1.0], valley=1e-3 * len(found), slide=1e-4, member="m")

    monkeypatch.setattr(lr_find_module, "find_lr", finding)
    member = Member(name="m", arch="a", lr="find", pretrained=True)  # a pretrained body: the head trains first
    assert resolve_lr(Body(), member, tmp_path, config={"rows": "a"}).lr == 1e-3
    assert resolve_lr(Body(), member, tmp_path, config={"rows": "a"}).lr == 1e-3  # the same run resumed: reused
    assert resolve_lr(Body(), member, tmp_path, config={"rows": "b"}).lr == 2e-3  # other rows: found again
    assert LRFinding.load(tmp_path).valley == 2e-3
    from_scratch = Member(name="m", arch="a", lr="find", pretrained=False)
    resolve_lr(Body(), from_scratch, tmp_path, config={"rows": "c"})
    assert found == [True, True, False]  # frozen where the first phase is (see schedule), not as the learner came


def test_lr_find_runs_on_the_mixed_and_smoothed_loss_the_member_trains_on(colours_data, monkeypatch):
    mixed = []
    before_batch = Mixing.before_batch
    monkeypatch.setattr(Mixing, "before_batch", lambda self: (mixed.append(self.member.name), before_batch(self)))
    train = colours_data.items.train
    member = Member(name="mixup-ema", arch="resnet10t", size=32, batch_size=8, mixup=0.4, label_smoothing=0.1,
                    ema=0.99)  # fmt: skip
    is_valid = make_splits(train["id"], 0.25, 1)["is_valid"]
    finding = lr_find_member(member, colours_data.competition, train, is_valid, colours_data.vocab, num_it=20)
    assert 1e-7 < finding.valley < 10 and len(mixed) == len(finding.lrs) > 10  # every batch of the test mixed


def test_lr_find_command_on_the_sample_layout(paddy_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[members]]\nname = "small"\narch = "resnet10t"\nsize = 32\nbatch_size = 8\n')
    out = tmp_path / "out"
    args = ["lr-find", "paddy", "--recipe", str(recipe), "--data", str(paddy_sample.data_dir), "--out", str(out),
            "--num-it", "40"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "lr_find.json").read_text())
    assert f"valley {saved['valley']:.2e}" in result.output and f"slide {saved['slide']:.2e}" in result.output
    table = pd.read_csv(out / "lr_find.csv")
    assert len(table) > 20 and table["lr"].is_monotonic_increasing
    Image.open(out / "lr_find.png").load()
    entries = {p.name.split(".", 1)[1] for p in (tmp_path / "cache" / "images").glob("*.npy")}
    assert entries == {"32x32.npy"}  # decoded at the recipe's size, as `run` will want them
    wrong = CliRunner().invoke(app, [*args, "--member", "nope"])
    assert wrong.exit_code == 2 and "has no member 'nope'; its members: small" in wrong.output


def test_lr_find_in_a_recipe_trains_at_the_valley_and_records_the_curve(colours_sample, tmp_path):
    sample, _ = colours_sample
    recipe = tmp_path / "find.toml"
    recipe.write_text('tta = 0\n[[members]]\nname = "f"\narch = "resnet10t"\nsize = 32\nepochs = 1\nbatch_size = 8\n'
                      'lr = "find"\nmixup = 0.4\nema = 0.99\n')  # fmt: skip
    result = run(colours(), recipe, data=sample.data_dir, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "s")
    member = result.folder / "members" / "f"
    found = json.loads((member / "lr_find.json").read_text())
    assert json.loads((member / "member.json").read_text())["member"]["lr"] == found["valley"]
    assert len(pd.read_csv(member / "lr_find.csv")) > 20
    metrics = json.loads((result.folder / "run.json").read_text())["metrics"]["members"]
    assert metrics["f"]["lr_found"] == {"": found["valley"]}
    page = result.report.read_text()
    assert 'id="lr"' in page and f"trained at the valley suggestion {found['valley']:.6f}" in page


def test_lr_find_in_a_terminal_leaves_no_batch_bar_behind(capsys, monkeypatch, tmp_path):
    """fastai's lr_find stops mid-epoch; its batch bar is cleared, so the next line starts on a clean line."""
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import MSELossFlat

    from kagglekit.train.progress import show_progress

    monkeypatch.chdir(tmp_path)  # fastai's LRFinder parks the weights in models/
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # a terminal: fastai's bars are kept
    monkeypatch.setenv("COLUMNS", "100")  # fastprogress sizes its bar to it
    points = [(torch.randn(2), torch.randn(1)) for _ in range(64)]
    learn = Learner(DataLoaders.from_dsets(points, points[:16], bs=8), torch.nn.Linear(2, 1), loss_func=MSELossFlat())
    show_progress(learn, "m")
    learn.lr_find(num_it=5, show_plot=False, suggest_funcs=None)  # 5 of the epoch's 8 batches
    print("lr_find for m: valley 1.00e-03")
    written = capsys.readouterr().out
    assert "Epoch 1/1 : |" in written  # the bar was drawn
    screen = pyte.Screen(100, 5)
    pyte.Stream(screen).feed(written.replace("\n", "\r\n"))
    assert [line.rstrip() for line in screen.display][:2] == ["lr_find for m: valley 1.00e-03", ""]
