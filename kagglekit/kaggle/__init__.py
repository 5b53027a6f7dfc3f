"""Everything that runs on or talks to Kaggle: the notebook environment, credentials and the official client,
downloads, submissions, offline packs, kernels and fan-out."""

from kagglekit._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "in_kaggle_notebook": ".notebook", "is_competition_rerun": ".notebook", "publish_submission": ".notebook",
    "working_dir": ".notebook", "export_member": ".notebook",
    "find_credentials": ".auth", "kaggle_client": ".auth",
    "download": ".downloads",
    "list_submissions": ".submissions", "submit": ".submissions", "submit_kernel": ".submissions",
    "offline_recipe": ".offline",
    "inference_dataset": ".packs", "pack_weights": ".packs", "pack_wheels": ".packs",
    "fanout": ".fanout", "push_kernel": ".kernels", "write_inference_kernel": ".kernels", "write_kernel": ".kernels",
    "retrying": ".retry",
})  # fmt: skip
