"""kagglekit: from "joined the competition" to a validated submission for Kaggle image competitions.

The layers, each usable on its own from a notebook:
`locate_data` -> `load_items` -> `make_splits` -> `train_member` -> `predict_member` -> `ensemble`
-> `to_submission` / `write_submission` -> `check_submission`; `run` composes them.

The training layers import torch and fastai, which takes seconds; they load on first use so that
`kagglekit check` and `kagglekit list` answer at once.
"""

from importlib import import_module

from kagglekit.checks import CheckReport, check_submission, compare_submissions
from kagglekit.competition import Competition, Submission, Task
from kagglekit.items import DataError, Items, load_items, locate_data, vocabularies
from kagglekit.metrics import METRICS, get_metric
from kagglekit.probabilities import Probabilities, ensemble
from kagglekit.recipe import Member, Recipe, RecipeError, load_recipe
from kagglekit.registry import get_competition, list_competitions, register
from kagglekit.samples import SampleSpec, ensure_sample, write_sample
from kagglekit.splits import make_folds, make_splits
from kagglekit.submission import score_submission, to_submission, write_submission

__version__ = "0.1.0"

_LAZY = {
    "train_member": "kagglekit.training",
    "predict_member": "kagglekit.prediction",
    "run": "kagglekit.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kagglekit' has no attribute {name!r}")


__all__ = [
    "METRICS", "CheckReport", "Competition", "DataError", "Items", "Member", "Probabilities", "Recipe",
    "RecipeError", "SampleSpec", "Submission", "Task", "check_submission", "compare_submissions", "ensemble",
    "ensure_sample", "get_competition", "get_metric", "list_competitions", "load_items", "load_recipe",
    "locate_data", "make_folds", "make_splits", "predict_member", "register", "run", "score_submission",
    "to_submission", "train_member", "vocabularies", "write_sample", "write_submission",
]  # fmt: skip
