"""Label-noise review: every training row ranked by how likely its label is wrong, as `review.csv` and a contact
sheet (`review.html`) of the top rows.

A row's evidence is the loss of its given label under predictions that did not learn it: out-of-fold predictions
when the recipe has k-fold members (every row is held out once), else the ensemble's validation predictions for
the held-out rows and, for the rest, the finished members' plain predictions, marked `train (seen)` because the
members trained on those labels (a wrong label that survives training is strong evidence; a right one that the
members memorised is weak). Confident wrong predictions come first (the ranking of confident learning: Northcutt
et al., "Confident Learning", JAIR 2021), then every other row by loss.

`review.csv` ends with empty `action` and `label` columns: mark rows `exclude`, or `relabel` with the right label,
and pass the file to `kagglekit run ... --corrections review.csv` (unmarked rows are ignored).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kagglekit._io import atomic_write, write_csv
from kagglekit.ensemble.combine import mean_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.pipeline.data import Data
from kagglekit.report.analysis import judge
from kagglekit.report.html import card, grid, page, paragraph
from kagglekit.report.pictures import thumbnails
from kagglekit.report.run_files import MemberFiles, RunFiles, load_run, run_data

REVIEW_CSV, REVIEW_HTML = "review.csv", "review.html"
CONTACT_SHEET = 48  # rows shown in review.html
OUT_OF_FOLD, VALID, SEEN = "out-of-fold", "valid", "train (seen)"


def _weight(member: MemberFiles) -> float:
    return float(next(iter(member.saved.values()))["member"]["weight"])


def _out_of_fold(run: RunFiles) -> Probabilities | None:
    """The weighted mean of the k-fold members' out-of-fold probabilities (of those in the ensemble, when any are)."""
    folded = [m for m in run.members if any(part.startswith("fold") for part in m.saved)]
    used = [m for m in folded if m.in_ensemble] or folded
    return mean_probabilities([m.valid for m in used], [_weight(m) for m in used]) if used else None


def _seen(run: RunFiles, data: Data, held_out: set[str]) -> Probabilities:
    """The run's ensemble (plain pass, no TTA) on every training row not in `held_out`, read as an inference pack
    reads it (the members it averaged, with their weights; on the GPU when there is one)."""
    from kagglekit.predict.pack import load_pack
    from kagglekit.predict.submission import member_probabilities

    rows = data.items.train[~data.items.train["id"].isin(held_out)]
    pack = load_pack(run.folder)
    return mean_probabilities([member_probabilities(m, rows, 0) for m in pack.members], pack.weights)


def review_labels(run: RunFiles, data: Data) -> pd.DataFrame:
    """Every training row of `data`, most likely mislabelled first: `rank, id, given_label, predicted_label,
    probability, loss, split, wrong, action, label` (`wrong`: the prediction differs from the given label; the
    last two columns are empty, for the user's corrections).

    `split` says where the evidence comes from: `out-of-fold`, `valid` (held out from every member) or
    `train (seen)` (predicted by members that trained on the row).
    """
    cutoffs = run.thresholds.thresholds if run.thresholds is not None else 0.5
    probs = _out_of_fold(run)
    if probs is not None:
        splits = dict.fromkeys(probs.ids, OUT_OF_FOLD)
    else:
        probs = run.ensemble_valid.subset([i for i in run.ensemble_valid.ids if i in set(data.items.train["id"])])
        splits = dict.fromkeys(probs.ids, VALID)
        if len(probs.ids) < len(data.items.train):
            seen = _seen(run, data, set(probs.ids))
            probs, splits = probs.concat(seen), {**splits, **dict.fromkeys(seen.ids, SEEN)}
    j = judge(probs, data, cutoffs)
    frame = pd.DataFrame({"id": j.ids, "given_label": j.truth, "predicted_label": j.predicted,
                          "probability": j.probability.round(4), "loss": j.losses.round(4),
                          "split": [splits[i] for i in j.ids], "wrong": j.wrong})  # fmt: skip
    frame = frame.sort_values(["wrong", "loss"], ascending=[False, False], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.assign(action="", label="")


def contact_sheet(review: pd.DataFrame, data: Data, run_name: str, top: int = CONTACT_SHEET) -> str:
    """An HTML page of the `top` rows of a review: thumbnail, id, given and predicted label, probability, loss."""
    shown = review.head(top)
    cards = [card(uri, f"#{row.rank} {row.id}",
                  [f"given: {row.given_label}", f"predicted: {row.predicted_label} ({row.probability:.2f})",
                   f"loss {row.loss:.3f} · {row.split}"], row.wrong)
             for row, uri in zip(shown.itertuples(), thumbnails(data.items.train, shown["id"], data.competition),
                                 strict=True)]  # fmt: skip
    text = paragraph(
        f"The {len(cards)} training images whose given label is most likely wrong (red: the models predict another "
        f"label). Mark rows in {REVIEW_CSV} (action exclude, or relabel with the right label) and pass it to "
        "kagglekit run --corrections; your data files are never edited."
    )
    title = f"kagglekit review: {data.competition.name}"
    return page(title, f"run {run_name}", [("review", "Most likely mislabelled", text + grid(cards))])


def write_review(run_dir: Path, data: Data | None = None, data_dir: Path | None = None,
                 top: int = CONTACT_SHEET) -> tuple[Path, Path]:  # fmt: skip
    """Write `review.csv` (every training row, ranked) and `review.html` (the `top` rows) in the run folder.

    `data` defaults to the run's data read again (see `kagglekit.report.run_data`). Raises `DataError` when the run
    folder, its members or its data cannot be read.
    """
    run_dir = Path(run_dir)
    data = data if data is not None else run_data(run_dir, data_dir)
    review = review_labels(load_run(run_dir), data)
    sheet = contact_sheet(review, data, run_dir.name, top)
    csv = write_csv(run_dir / REVIEW_CSV, review)
    html = atomic_write(run_dir / REVIEW_HTML, lambda tmp: tmp.write_text(sheet, encoding="utf-8"))
    return csv, html
