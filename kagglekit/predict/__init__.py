"""Probabilities from trained members: test-time augmentation, and exported members without a learner."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "predict_member": ".tta", "predict_member_passes": ".tta",
    "ExportedMember": ".export", "load_member": ".export", "member_parts": ".export", "predict_run": ".export",
})  # fmt: skip
