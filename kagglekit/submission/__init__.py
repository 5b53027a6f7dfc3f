"""From probabilities to the competition's CSV: metrics, writing, and the checks before a file is submitted."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "METRICS": ".metrics", "Metric": ".metrics", "get_metric": ".metrics",
    "answers_for": ".build", "decisions": ".build", "score_submission": ".build", "score_validation": ".build",
    "to_submission": ".build", "truth": ".build", "write_submission": ".build",
    "submission_run": ".sidecar", "submission_source": ".sidecar",
    "CheckReport": ".checks", "check_submission": ".checks",
    "Comparison": ".compare", "compare_submissions": ".compare",
})  # fmt: skip
