"""The report's plots as PNG bytes, drawn with matplotlib's object-oriented API on the Agg canvas.

No pyplot state machine: each function builds its own `Figure`, so drawing never opens a window, never depends on
(or changes) the backend a notebook has chosen, and never leaks figures between calls.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from kagglekit.train.lr_find import LRFinding

DPI = 100
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:grey")


def figure(width: float = 6.4, height: float = 4.0, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure on an Agg canvas and its axes (always an array)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(squeeze=False, **subplots)
    return fig, axes.ravel()


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def lr_find_png(finding: LRFinding) -> bytes:
    """Loss against learning rate (log scale), with fastai's valley and slide suggestions marked."""
    fig, (ax,) = figure()
    ax.plot(finding.lrs, finding.losses, color="tab:blue")
    for name, lr, colour in (("valley", finding.valley, "tab:orange"), ("slide", finding.slide, "tab:green")):
        loss = np.interp(np.log10(lr), np.log10(finding.lrs), finding.losses)
        ax.plot(lr, loss, "o", color=colour, label=f"{name} {lr:.2e}")
    low, high = np.nanpercentile(finding.losses, [0, 95])
    ax.set_ylim(low - 0.05 * (high - low), high + 0.3 * (high - low))  # divergence at the end would flatten the rest
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)",
           title=f"lr_find{': ' + finding.member if finding.member else ''}")  # fmt: skip
    ax.legend(loc="best")
    return png(fig)


def class_balance_png(counts: pd.DataFrame, what: str) -> bytes:
    """Stacked horizontal bars: per class (index), the rows of each split (columns, e.g. train and valid)."""
    fig, (ax,) = figure(6.4, max(2.0, 0.28 * len(counts) + 1))
    left = np.zeros(len(counts))
    for column in counts.columns:
        ax.barh(counts.index.astype(str), counts[column], left=left, label=column)
        left += counts[column].to_numpy()
    ax.invert_yaxis()
    ax.set(xlabel=f"{what} rows", title=f"{what} per class")
    ax.legend(loc="lower right")
    return png(fig)


def image_sizes_png(sizes: pd.DataFrame) -> bytes:
    """Width against height of the images (`width`, `height`, `count` columns), marker area by count."""
    fig, (ax,) = figure(5, 4)
    ax.scatter(sizes["width"], sizes["height"], s=20 + 200 * sizes["count"] / sizes["count"].max(), alpha=0.6)
    for row in sizes.nlargest(5, "count").itertuples():
        ax.annotate(f"{row.width}x{row.height} ({row.count})", (row.width, row.height), fontsize=8)
    ax.set(xlabel="width (px)", ylabel="height (px)", title="image sizes")
    return png(fig)


def training_curves_png(history: pd.DataFrame, metrics: Sequence[str], title: str) -> bytes:
    """Losses (left) and validation metrics (right) per epoch, one colour per part (fold). `history` has `part`,
    `step` (the epoch counted across all phases), `phase_label`, and a column per loss or metric; dotted lines
    mark where a new phase (a stage, or the head-only epochs before it) starts."""
    fig, (loss_ax, metric_ax) = figure(9, 3.4, ncols=2)
    for (part, rows), colour in zip(history.groupby("part", sort=False), COLOURS, strict=False):
        for column, style in (("train_loss", "-"), ("valid_loss", "--")):
            if column in rows:
                label = f"{column} {part}".strip()
                loss_ax.plot(rows["step"], rows[column], style, marker=".", color=colour, label=label)
        for name, style in zip(metrics, ("-", "--", "-.", ":"), strict=False):
            label = f"{name} {part}".strip()
            metric_ax.plot(rows["step"], rows[name], style, marker=".", color=colour, label=label)
    starts = history.drop_duplicates("phase_label")
    for ax in (loss_ax, metric_ax):
        for step in starts["step"].iloc[1:]:
            ax.axvline(step - 0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    losses = history.filter(like="_loss").to_numpy(dtype=float)
    finite = losses[np.isfinite(losses) & (losses > 0)]
    if len(finite) and finite.max() > 100 * finite.min():  # a diverging member: keep the rest readable
        loss_ax.set_yscale("log")
    loss_ax.set(ylabel="loss", title=f"{title}: loss")
    metric_ax.set(ylabel="validation metric", title="; ".join(starts["phase_label"]))
    metric_ax.title.set_fontsize(8)
    return png(fig)


def confusion_png(matrix: np.ndarray, classes: Sequence[str]) -> bytes:
    """A row-normalised confusion matrix (recall on the diagonal), via scikit-learn's display."""
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(classes)
    side = min(4 + 0.45 * n, 24)
    fig, (ax,) = figure(side, side * 0.85)
    display = ConfusionMatrixDisplay(matrix, display_labels=list(classes))
    display.plot(ax=ax, include_values=n <= 25, values_format=".2f", cmap="Blues", xticks_rotation="vertical",
                 colorbar=True)  # fmt: skip
    ax.set_title("normalised confusion matrix (rows: true class)")
    return png(fig)


def calibration_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], confidence: np.ndarray) -> bytes:
    """Reliability diagram: per model, the observed accuracy of its top class against the probability it gave
    (`(observed, predicted)` per bin, from scikit-learn's `calibration_curve`), over a histogram of confidences."""
    fig, (ax, hist) = figure(6, 6, nrows=2, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for (name, (observed, predicted)), colour in zip(curves.items(), COLOURS, strict=False):
        ax.plot(predicted, observed, marker="o", color=colour, label=name)
    ax.set(ylabel="observed accuracy", title="calibration of the top class", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    hist.hist(confidence, bins=20, range=(0, 1), color="tab:blue")
    hist.set(xlabel="predicted probability of the top class (ensemble)", ylabel="rows")
    return png(fig)


def correlation_png(matrix: pd.DataFrame) -> bytes:
    """A heatmap of the Pearson correlations between members' validation probabilities (annotated)."""
    n = len(matrix)
    fig, (ax,) = figure(2.5 + 0.9 * n, 2 + 0.8 * n)
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(n), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(n), matrix.index)
    for i in range(n):
        for j in range(n):
            value = matrix.iat[i, j]
            ax.text(j, i, "n/a" if pd.isna(value) else f"{value:.2f}", ha="center", va="center", fontsize=9)
    fig.colorbar(image, ax=ax)
    ax.set_title("correlation of validation probabilities")
    return png(fig)


def timings_png(timings: Mapping[str, float]) -> bytes:
    """Horizontal bars: seconds per step of the run, in the order they ran."""
    fig, (ax,) = figure(6.4, max(2.0, 0.3 * len(timings) + 1))
    ax.barh(list(timings), list(timings.values()), color="tab:grey")
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="time per step")
    return png(fig)
