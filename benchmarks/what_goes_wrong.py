"""What the report's tools find on the paddy sample with planted label noise, in one run of the shipped recipe.

1. Label-noise review: a share of the training labels is changed to another disease (the image moved to that
   label's folder, as a mislabelled Paddy Doctor image would be); after `kagglekit run` with the `sample` recipe,
   `review` ranks every training row. Reported: how many planted rows are in the top k (k = the number planted)
   and in the top 2k, against what a random order would give.
2. Guards: the recipe gets a third member trained at a learning rate of 10 for 2 epochs (it learns nothing);
   the ensemble's validation accuracy with broken members left out (the default) and kept
   (`keep_broken_members = true`), side by side from the same trained members, and each member's score, TTA gain
   and constant-prediction score.
3. lr_find on the first member's real loaders: valley and slide, against the recipe's rate.

Usage (writes the printed lines to benchmarks/results/what_goes_wrong.txt too):

    .venv/bin/python benchmarks/what_goes_wrong.py [--n-train 400] [--planted 0.05] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit import get_competition
from kagglekit.data.splits import member_splits
from kagglekit.pipeline import ensemble_members, run
from kagglekit.recipe import load_recipe
from kagglekit.report import run_data, write_review
from kagglekit.samples import write_sample
from kagglekit.train.lr_find import lr_find_member

RESULTS = Path(__file__).parent / "results" / "what_goes_wrong.txt"
BROKEN = """
[[members]]
name = "broken-lr10"
arch = "resnet10t"
resize = "squish"
lr = 10.0
epochs = 2
"""


def plant(data_dir: Path, share: float, seed: int) -> dict[str, str]:
    """Give `share` of the training rows another label, moving each image into that label's folder."""
    table = pd.read_csv(data_dir / "train.csv", dtype=str)
    rng = np.random.default_rng(seed)
    labels = sorted(table["label"].unique())
    rows = rng.choice(len(table), size=max(1, round(share * len(table))), replace=False)
    planted = {}
    for row in rows:
        old = table.at[row, "label"]
        new = rng.choice([label for label in labels if label != old])
        image = table.at[row, "image_id"]
        (data_dir / "train_images" / new).mkdir(exist_ok=True)
        shutil.move(data_dir / "train_images" / old / image, data_dir / "train_images" / new / image)
        table.at[row, "label"] = new
        planted[image] = old
    table.to_csv(data_dir / "train.csv", index=False)
    return planted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--planted", type=float, default=0.05, help="share of training labels made wrong")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    paddy = get_competition("paddy")
    with tempfile.TemporaryDirectory() as tmp:
        recipe_path = Path(tmp) / "sample-and-broken.toml"
        recipe_path.write_text(paddy.recipe_path("sample").read_text() + BROKEN)
        sample = write_sample(paddy, Path(tmp) / "data", seed=args.seed, n_train=args.n_train, n_test=100)
        planted = plant(sample.data_dir, args.planted, args.seed)
        result = run(paddy, recipe_path, data=sample.data_dir, answers=sample.answers, runs_dir=Path(tmp) / "runs",
                     submissions_dir=Path(tmp) / "subs")  # fmt: skip
        data = run_data(result.folder)
        recipe = load_recipe(recipe_path)
        say(
            f"paddy sample: {len(data.items.train)} training rows, {len(planted)} labels planted wrong "
            f"(seed {args.seed}); recipe sample + a member at lr 10 ({', '.join(m.name for m in recipe.members)})"
        )

        say("\n## guards (validation accuracy)")
        for m in result.members:
            gain = "n/a" if m.tta_gain is None else f"{m.tta_gain:+.4f}"
            say(f"member {m.name}: {m.valid_score:.4f} (TTA used: {m.tta_used}, TTA gain {gain}), constant "
                f"prediction {m.prior_score:.4f}, broken: {m.broken or 'no'}")  # fmt: skip
        kept = ensemble_members(result.members, replace(recipe, keep_broken_members=True), data)
        say(f"ensemble, broken members left out (default): {result.ensemble.score:.4f} of {result.ensemble.members}")
        say(f"ensemble, broken members kept:               {kept.score:.4f} of {kept.members}")
        say(f"best member: {result.ensemble.best_member[0]} {result.ensemble.best_member[1]:.4f}")

        say("\n## review of the planted labels")
        csv, _ = write_review(result.folder, data=data)
        review = pd.read_csv(csv, dtype=str)
        k, n = len(planted), len(review)
        for top in (k, 2 * k):
            found = review["id"].head(top).isin(planted).sum()
            say(f"planted rows in the top {top}: {found} of {k} (a random order: {top * k / n:.1f})")
        ranks = review.set_index("id").loc[list(planted), "rank"].astype(int)
        say(f"median rank of a planted row: {ranks.median():.0f} of {n}")

        say("\n## lr_find on the first member's loaders")
        member = recipe.members[0]
        _, is_valid = member_splits(member, recipe, data.items.train, paddy, Path(tmp) / "lr")[0]
        finding = lr_find_member(member, paddy, data.items.train, is_valid, data.vocab, recipe.member_seed(member))
        say(f"{member.name}: valley {finding.valley:.2e}, slide {finding.slide:.2e} (recipe lr {member.lr})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
