"""The whole job as stages a notebook can call one by one: `prepare_data` -> `fit_members` -> `ensemble_members`
-> `write_and_check`; `run` composes them and keeps the run record."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Data": ".data", "corrected": ".data", "labels_only": ".data", "prepare_data": ".data",
    "MemberOutput": ".members", "fit_member": ".members", "fit_members": ".members",
    "EnsembleOutput": ".combine", "ensemble_members": ".combine",
    "SubmissionOutput": ".write", "write_and_check": ".write",
    "RunResult": ".job", "run": ".job",
})  # fmt: skip
