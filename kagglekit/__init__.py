"""kagglekit: from "joined the competition" to a validated submission for Kaggle image competitions.

The notebook API. The whole job is `run`; its stages, each usable on its own:
`locate_data` -> `prepare_data` -> `fit_member` / `fit_members` -> `ensemble_members` -> `write_and_check`,
and below them the steps they are made of (`load_items`, `make_splits`, `train_member`, `predict_member`,
`mean_probabilities`, `to_submission`, `check_submission`, ...).

Every name is imported on first use: `import kagglekit` is instant, and torch and fastai load only when a model
is built.
"""

from kagglekit._lazy import attach

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = attach(__name__, {
    # plug-ins and recipes
    "Competition": ".competition", "DicomIndex": ".competition", "SampleSpec": ".competition",
    "Submission": ".competition", "Task": ".competition",
    "get_competition": ".registry", "list_competitions": ".registry", "register": ".registry",
    "lazy_import": "._lazy",
    "Member": ".recipe", "Recipe": ".recipe", "load_recipe": ".recipe", "parse_recipe": ".recipe",
    # errors
    "BudgetError": ".errors", "CredentialsError": ".errors", "DataError": ".errors", "DicomReadError": ".errors",
    "ImageReadError": ".errors", "KaggleError": ".errors", "KagglekitError": ".errors", "PluginError": ".errors",
    "RecipeError": ".errors", "SubmissionError": ".errors",
    # the stages and the whole job
    "Data": ".pipeline.data", "prepare_data": ".pipeline.data",
    "MemberOutput": ".pipeline.members", "fit_member": ".pipeline.members", "fit_members": ".pipeline.members",
    "EnsembleOutput": ".pipeline.combine", "ensemble_members": ".pipeline.combine",
    "SubmissionOutput": ".pipeline.write", "write_and_check": ".pipeline.write",
    "RunResult": ".pipeline.job", "run": ".pipeline.job",
    # the steps below them
    "Items": ".data.items", "load_items": ".data.items", "vocabularies": ".data.items",
    "locate_data": ".data.locate",
    "make_folds": ".data.splits", "make_splits": ".data.splits", "member_splits": ".data.splits",
    "member_dataloaders": ".train.loaders",
    "train_member": ".train.member", "LRFinding": ".train.lr_find", "lr_find_member": ".train.lr_find",
    "predict_member": ".predict.tta", "load_member": ".predict.learner",
    "export_pack": ".predict.pack", "load_pack": ".predict.pack", "predict_files": ".predict.files",
    "predict_submission": ".predict.submission",
    "Probabilities": ".ensemble.probabilities", "mean_probabilities": ".ensemble.combine",
    "METRICS": ".submission.metrics", "get_metric": ".submission.metrics",
    "score_submission": ".submission.build", "to_submission": ".submission.build",
    "write_submission": ".submission.build",
    "CheckReport": ".submission.checks", "check_submission": ".submission.checks",
    "compare_submissions": ".submission.compare",
    "ensure_sample": ".samples.writer", "write_sample": ".samples.writer",
    # what the model gets wrong
    "write_report": ".report.build", "load_run": ".report.run_files", "run_data": ".report.run_files",
    "review_labels": ".report.review", "write_review": ".report.review",
    "apply_corrections": ".data.corrections", "read_corrections": ".data.corrections",
})  # fmt: skip
