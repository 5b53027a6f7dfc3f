"""Combining members honestly: probabilities on disk, their weighted mean, tuned weights and thresholds (numpy)."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Probabilities": ".probabilities",
    "class_shares": ".combine", "item_losses": ".combine", "mean_probabilities": ".combine",
    "prior_probabilities": ".combine", "training_prior": ".combine", "tune_weights": ".combine",
    "Thresholds": ".thresholds", "label_matrix": ".thresholds", "tune_for_metric": ".thresholds",
    "tune_thresholds": ".thresholds",
})  # fmt: skip
