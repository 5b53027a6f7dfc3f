"""What the model gets wrong: the per-run report (`report.html`) and the label-noise review (`review.csv`)."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "build_report": ".build", "write_report": ".build",
    "RunFiles": ".run_files", "load_run": ".run_files", "run_data": ".run_files",
    "review_labels": ".review", "write_review": ".review",
})  # fmt: skip
