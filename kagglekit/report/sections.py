"""The report's sections about the run itself: overview, data, learning rates, training curves, scores, timings.
Each takes the run's files and data and returns the section's HTML (see `kagglekit.report.build`)."""

from __future__ import annotations

from dataclasses import fields

import pandas as pd

from kagglekit.pipeline.data import Data
from kagglekit.recipe import Member
from kagglekit.report import figures
from kagglekit.report.html import DASH, esc, image, notes, paragraph, table
from kagglekit.report.pictures import image_sizes
from kagglekit.report.run_files import MemberFiles, RunFiles
from kagglekit.submission.metrics import get_metric

SIZE_SAMPLE = 400  # images whose size the data section reads (headers only)
SHOWN_ROWS = 20  # rows of a long table shown in the report (the CSV beside it has them all)


def _fmt(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _head(frame: pd.DataFrame, file: str) -> str:
    more = len(frame) - SHOWN_ROWS
    return table(frame.head(SHOWN_ROWS)) + (paragraph(f"… and {more} more in {file}.") if more > 0 else "")


def overview(run: RunFiles, data: Data) -> str:
    """Warnings first, then the headline numbers."""
    metric, m = data.competition.metric, run.metrics
    direction = "higher" if get_metric(metric).greater_is_better else "lower"
    ensemble = f"{_fmt(m.get(f'ensemble_valid_{metric}'))} on {m.get('ensemble_valid_rows', 0)} held-out rows"
    rows = [
        ("validation metric", f"{metric} ({direction} is better)"),
        ("ensemble", ensemble),
        ("ensemble members", ", ".join(m.get("ensemble_members", [])) or DASH),
    ]
    if m.get("excluded_members"):
        rows.append(("left out (broken)", ", ".join(m["excluded_members"])))
    if (best := m.get("best_member")) is not None:
        rows.append(("best member", f"{best['name']} {_fmt(best[f'valid_{metric}'])}"))
    if f"test_{metric}" in m:
        rows.append(("test (hidden answers)", _fmt(m[f"test_{metric}"])))
    if (submission := run.record.get("artifacts", {}).get("submission")) is not None:
        check = m.get("submission_check", {})
        rows.append(("submission", f"{submission} ({'passed' if check.get('ok') else 'FAILED'} the checks)"))
    guards = ("broken", "below its best", "no better than")  # the notes of kagglekit.pipeline.combine's guards
    warnings = [n for n in run.record.get("notes", []) if any(guard in n for guard in guards)]
    others = [n for n in run.record.get("notes", []) if n not in warnings]
    return notes(warnings, "bad") + notes(others) + table(pd.DataFrame(rows, columns=["what", "value"]))


def _class_counts(run: RunFiles, data: Data) -> pd.DataFrame:
    """Rows per class (tag) of the target, by split when the run has the recipe's shared split."""
    task = data.competition.tasks[data.competition.target_task]
    train = data.items.train
    labels = train[task.column].str.split(task.label_delim) if task.kind == "multi" else train[task.column]
    split = pd.Series("train", index=train.index)
    if run.splits is not None:
        split = train["id"].map(run.splits.set_index("id")["is_valid"]).map({True: "valid", False: "train"})
    frame = pd.DataFrame({"label": labels, "split": split.fillna("train")}).explode("label")
    counts = pd.crosstab(frame["label"], frame["split"]).rename_axis(index="class", columns=None)
    return counts.reindex(data.vocab[data.competition.target_task], fill_value=0)


def data_summary(run: RunFiles, data: Data) -> str:
    """Rows, class balance, image sizes, and the rows that were skipped or corrected."""
    m, competition = run.metrics, data.competition
    counts = _class_counts(run, data)
    sizes = image_sizes(data.items.train, competition, SIZE_SAMPLE)
    parts = [
        table(pd.DataFrame({"training rows used": [m.get("n_train", len(data.items.train))],
                            "test rows": [m.get("n_test", len(data.items.test))],
                            "training rows skipped": [len(run.tables.get("skipped_items", []))],
                            "undecodable test images": [len(run.tables.get("undecodable_test", []))]})),
        image(figures.class_balance_png(counts, competition.tasks[competition.target_task].column), "class balance"),
        table(counts.reset_index()),
        paragraph(f"Image sizes (width x height) of {int(sizes['count'].sum())} training images (a random sample), "
                  "as the files store them; the loaders read them from the image cache, shrunk to the recipe's "
                  "largest size:"),
        image(figures.image_sizes_png(sizes), "image sizes") if len(sizes) > 1 else "",
        table(sizes.head(10)),
    ]  # fmt: skip
    for name, title in (("skipped_items", "Training rows skipped"), ("undecodable_test", "Undecodable test images"),
                        ("corrections_applied", "Label corrections applied")):  # fmt: skip
        if name in run.tables and len(run.tables[name]):
            parts += [f"<h3>{esc(title)}</h3>", _head(run.tables[name], f"{name}.csv")]
    return "".join(parts)


def learning_rates(run: RunFiles, data: Data) -> str:
    """The lr_find curve of every member that had `lr = "find"`, with the rate chosen."""
    parts = []
    for member in run.members:
        found = member.metrics.get("lr_found") or {}
        for part, plot in member.lr_plots.items():
            label = f"{member.name}/{part}" if part else member.name
            chosen = found.get(part)
            parts.append(paragraph(f"{label}: trained at the valley suggestion {_fmt(chosen, 6)}"))
            parts.append(image(plot.read_bytes(), f"lr_find {label}"))
    return "".join(parts)


def _phase_labels(saved: dict) -> dict[int, str]:
    """'phase k: HxW, head only|all layers, lr' for each phase of the member's schedule."""
    from kagglekit.train.schedule import schedule

    known = {f.name for f in fields(Member)}
    member = Member(**{k: v for k, v in saved["member"].items() if k in known})
    stages = member.stage_list
    return {number: f"phase {number + 1}: {stages[p.stage].size[0]}x{stages[p.stage].size[1]}, "
                    f"{'head only' if p.frozen else 'all layers'}"
            for number, p in enumerate(schedule(member))}  # fmt: skip


def _history(member: MemberFiles) -> tuple[pd.DataFrame, list[str]]:
    frames = []
    for part, saved in member.saved.items():
        frame = pd.DataFrame(saved["history"])
        if frame.empty:
            continue
        labels = _phase_labels(saved)
        frames.append(frame.assign(part=part, step=range(len(frame)), phase_label=frame["phase"].map(labels)))
    history = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    metrics = [c for c in history.columns if c not in ("phase", "epoch", "train_loss", "valid_loss", "part", "step",
                                                        "phase_label")]  # fmt: skip
    return history, metrics


def training(run: RunFiles, data: Data) -> str:
    """Loss and metric per epoch of every member, per phase (stage)."""
    parts = []
    for member in run.members:
        history, metrics = _history(member)
        settings = next(iter(member.saved.values()))["member"]
        seconds = sum(s.get("train_seconds", 0) for s in member.saved.values())
        parts.append(f"<h3>{esc(member.name)}</h3>")
        parts.append(paragraph(f"{settings['arch']}, lr {settings['lr']}, batch {settings['batch_size']}, "
                               f"{len(history)} epochs in {seconds:.0f} s"))  # fmt: skip
        if len(history):
            parts.append(image(figures.training_curves_png(history, metrics, member.name), f"{member.name} curves"))
    return "".join(parts)


def scores(run: RunFiles, data: Data) -> str:
    """Validation scores per member with and without TTA, against the constant prediction, and the ensemble's."""
    metric, m = data.competition.metric, run.metrics
    rows = []
    for member in run.members:
        s = member.metrics
        status = "ok" if not s.get("broken") else ("broken, kept" if member.in_ensemble else "broken, left out")
        rows.append({
            "model": member.name, "rows": s.get("valid_rows"), metric: s.get(f"valid_{metric}"),
            "with TTA": s.get(f"valid_{metric}_tta"), "without TTA": s.get(f"valid_{metric}_no_tta"),
            "TTA gain": s.get("tta_gain"), "TTA used": "yes" if s.get("tta_used") else "no",
            "constant prediction": s.get(f"constant_prediction_{metric}"), "status": status,
        })  # fmt: skip
    with_tta, without = m.get(f"ensemble_valid_{metric}"), m.get(f"ensemble_valid_{metric}_no_tta")
    rows.append(
        {
            "model": "ensemble",
            "rows": m.get("ensemble_valid_rows"),
            metric: with_tta,
            "with TTA": with_tta,
            "without TTA": without,
            "status": ", ".join(m.get("ensemble_members", [])),
        }
    )
    frame = pd.DataFrame(rows)
    explain = paragraph(
        f"{metric} on held-out rows. TTA gain is signed so that positive means TTA helped; the constant prediction "
        "is the training prior (class frequencies) scored on the same rows: a member no better than it learned "
        "nothing and is left out of the ensemble unless the recipe sets keep_broken_members = true."
    )
    reasons = [f"{x.name}: {x.metrics['broken']}" for x in run.members if x.metrics.get("broken")]
    below = [n for n in run.record.get("notes", []) if "below its best" in n]
    return explain + table(frame) + notes(reasons + below, "bad")


def timings(run: RunFiles, data: Data) -> str:
    """Seconds per step of the run."""
    seconds = run.record.get("timings_seconds", {})
    if not seconds:
        return paragraph("No timings recorded.")
    frame = pd.DataFrame({"step": list(seconds), "seconds": list(seconds.values())})
    total = paragraph(f"{sum(seconds.values()):.0f} s in all (the report itself is not included).")
    return total + image(figures.timings_png(seconds), "timings") + table(frame, digits=1)
