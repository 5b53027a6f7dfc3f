"""Training one ensemble member with fastai + timm (imported on first use: torch and fastai take seconds)."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "train_member": ".member",
    "Head": ".heads", "TaskLoss": ".heads", "make_heads": ".heads", "place_heads": ".heads",
    "make_dataloaders": ".loaders", "sampling_weights": ".loaders", "ImageDataLoaders": ".loaders",
    "member_dataloaders": ".loaders",
    "create_learner": ".learner", "apply_precision": ".learner", "precision_for": ".learner",
    "accumulation_callbacks": ".schedule", "Phase": ".schedule",
    "clear_checkpoint": ".checkpoint", "history_scores": ".checkpoint", "training_config": ".checkpoint",
    "WeightEma": ".ema", "Mixing": ".mixing", "soft_targets": ".mixing",
    "CheckpointPool": ".averaging", "mean_weights": ".averaging", "EpochBatchNorm": ".batchnorm",
    "weights_file": ".weights",
    "LRFinding": ".lr_find", "find_lr": ".lr_find", "lr_find_member": ".lr_find",
    "PRESETS": ".augment", "batch_transforms": ".augment", "CpuAugment": ".augment",
})  # fmt: skip
