"""`report.html`: one standalone page per run that shows what the model gets wrong (see `write_report`)."""

from __future__ import annotations

from pathlib import Path

from kagglekit._io import atomic_write
from kagglekit.pipeline.data import Data
from kagglekit.report import analysis, sections
from kagglekit.report.html import page, paragraph
from kagglekit.report.run_files import RunFiles, load_run, run_data

REPORT = "report.html"


def build_report(run: RunFiles, data: Data) -> str:
    """The report's HTML: overview, data, learning rates, training curves, scores with and without TTA, the
    ensemble's mistakes (confusion matrix and per-class precision/recall, or per-tag F-scores and thresholds),
    calibration (probability submissions), member correlation, the top-loss gallery and timings."""
    competition = data.competition
    parts = [("overview", "Overview", sections.overview(run, data)),
             ("data", "Data", sections.data_summary(run, data))]  # fmt: skip
    if any(m.lr_plots for m in run.members):
        parts.append(("lr", "Learning rate", sections.learning_rates(run, data)))
    parts += [("training", "Training curves", sections.training(run, data)),
              ("scores", "Validation scores", sections.scores(run, data))]  # fmt: skip
    cutoffs = run.thresholds.thresholds if run.thresholds is not None else 0.5
    judged = analysis.judge(run.ensemble_valid, data, cutoffs) if run.ensemble_valid is not None else None
    if judged is None or not judged.ids:
        parts.append(("mistakes", "Mistakes", paragraph("No labelled validation rows: nothing to judge.")))
    else:
        parts.append(("mistakes", "Mistakes", analysis.mistakes(run, data, judged)))
        if competition.submission.kind == "probs":
            parts.append(("calibration", "Calibration", analysis.calibration(run, data, judged)))
        parts += [("correlation", "Member correlation", analysis.correlation(run, data, judged)),
                  ("top-losses", "Top losses", analysis.top_losses(run, data, judged))]  # fmt: skip
    parts.append(("timings", "Timings", sections.timings(run, data)))
    record = run.record
    subtitle = (f"{competition.title} · run {run.folder.name} · {record.get('status', '?')} · "
                f"started {record.get('started', '?')}")  # fmt: skip
    return page(f"kagglekit report: {competition.name}", subtitle, parts)


def write_report(run_dir: Path, data: Data | None = None, data_dir: Path | None = None) -> Path:
    """Write `report.html` in the run folder and return its path.

    `data` is the run's data as it trained (`run` passes it); without it the data is read again from the run's
    data folder (or `data_dir`), with the label corrections run.json records. Raises `DataError` when the run
    folder or its data cannot be read.
    """
    run_dir = Path(run_dir)
    data = data if data is not None else run_data(run_dir, data_dir)
    html = build_report(load_run(run_dir), data)
    return atomic_write(run_dir / REPORT, lambda tmp: tmp.write_text(html, encoding="utf-8"))
