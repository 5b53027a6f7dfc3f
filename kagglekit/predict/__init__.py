"""Probabilities from trained members: test-time augmentation, members rebuilt from their files, inference packs,
whole submissions within a time budget, and loose image files."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "predict_member": ".tta", "predict_member_passes": ".tta",
    "check_prepared": ".learner", "load_member": ".learner", "rebuild_learner": ".learner",
    "InferencePack": ".pack", "export_pack": ".pack", "load_pack": ".pack", "member_parts": ".pack",
    "Plan": ".budget", "fit_plan": ".budget",
    "PredictionResult": ".submission", "predict_submission": ".submission",
    "FilePredictions": ".files", "predict_files": ".files",
})  # fmt: skip
