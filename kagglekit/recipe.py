"""Recipes: a TOML file that says how to split the data and which ensemble members to train.

A recipe has run-wide settings, a `[defaults]` table applied to every member, and one `[[members]]` table
per member. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kagglekit.errors import RecipeError

ResizeMethod = Literal["squish", "crop", "pad"]
FIND = "find"  # `lr = "find"`: fastai's lr_find picks the rate (its valley suggestion) before the member trains
AUTO = "auto"  # `tta = "auto"`: each member uses TTA only if it beats the plain prediction on validation
AUTO_TTA_PASSES = 4  # augmented passes a member predicts with under `tta = "auto"`
AUGMENTATIONS = ("none", "flip", "default", "overhead")  # the presets of kagglekit.train.augment


@dataclass(frozen=True)
class Stage:
    """One step of progressive resizing: train at this size for this many epochs."""

    size: tuple[int, int]  # (height, width)
    resize: ResizeMethod
    epochs: int
    lr: float | str  # "find" until kagglekit.train.lr_find resolves it


def _hw(size: int | list | tuple) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class Member:
    """One ensemble member: an architecture and how it is trained and predicted.

    `batch_size` is the *effective* batch size: each optimizer step sees this many images, accumulated
    over `accum` forward/backward passes of `batch_size // accum` images each.
    """

    name: str
    arch: str
    pretrained: bool | str = False  # True: timm's weights; a path: a weights file or folder (offline)
    size: int | tuple[int, int] = 224
    resize: ResizeMethod = "squish"
    aug: str = "default"
    epochs: int = 5
    lr: float | Literal["find"] = 2e-3  # "find": the valley suggestion of fastai's lr_find, found before training
    batch_size: int = 64
    accum: int = 1
    weight: float = 1.0  # its weight in the ensemble's mean
    tasks: dict[str, float] | None = None  # task -> loss weight; None: the competition's target alone
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: by the GPU's compute capability
    channels_last: bool | None = None  # None: on CUDA, for batch-norm CNNs
    compile: bool = False  # torch.compile the model (falls back to eager with a note if compilation fails)
    seed: int | None = None  # None: the recipe's seed
    stages: tuple[dict, ...] | None = None  # progressive resizing: ({size, epochs, resize?, lr?}, ...)
    split_seed: int | None = None  # train on its own random split (split ensembles); None: the recipe's split
    folds: int | None = None  # train k models on k folds, with out-of-fold validation predictions
    sampling: Literal["none", "balanced", "loss"] = "none"  # balanced: per class; loss: previous member's losses
    freeze_epochs: int = 1  # epochs of head-only training before each unfrozen stage (pretrained or resized)
    ema: float | None = None  # decay of an exponential moving average of the weights; None: off
    mixup: float = 0.0  # mixup alpha: lambda ~ Beta(alpha, alpha); 0: off
    cutmix: float = 0.0  # cutmix alpha; with mixup too, each mixed batch uses one of them (even odds)
    mix_prob: float = 1.0  # share of training batches mixed
    mix_off_epochs: int = 0  # the member's last epochs trained without mixing
    label_smoothing: float = 0.0  # single-label heads only
    average_checkpoints: int = 0  # average the weights of the k best epochs of the last phase; 0: off
    average_mode: Literal["uniform", "greedy"] = "uniform"  # greedy: add an epoch only if validation improves

    def __post_init__(self) -> None:
        if self.accum < 1:
            raise RecipeError(f"member {self.name!r}: accum must be >= 1, got {self.accum}.")
        if self.batch_size % self.accum:
            raise RecipeError(
                f"member {self.name!r}: batch_size {self.batch_size} (the effective batch size) is not "
                f"divisible by accum {self.accum}; each step would see a different number of images. "
                f"Use e.g. batch_size = {self.batch_size // self.accum * self.accum or self.accum}."
            )
        if self.aug not in AUGMENTATIONS:
            raise RecipeError(
                f"member {self.name!r}: unknown augmentation preset {self.aug!r}; known: {', '.join(AUGMENTATIONS)}."
            )
        if self.resize not in ("squish", "crop", "pad"):
            raise RecipeError(f"member {self.name!r}: resize must be squish, crop or pad, got {self.resize!r}.")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise RecipeError(
                f"member {self.name!r}: precision must be auto, fp32, fp16 or bf16, got {self.precision!r}."
            )
        if not isinstance(self.compile, bool):
            raise RecipeError(f"member {self.name!r}: compile must be true or false, got {self.compile!r}.")
        if not isinstance(self.pretrained, (bool, str)):
            raise RecipeError(f"member {self.name!r}: pretrained must be true, false or a path to weights.")
        lr_ok = self.lr == FIND or (isinstance(self.lr, (int, float)) and self.lr > 0)
        if self.epochs < 1 or not lr_ok or self.weight < 0:
            raise RecipeError(f'member {self.name!r}: epochs >= 1, lr > 0 (or "find") and weight >= 0 are required.')
        if self.sampling not in ("none", "balanced", "loss"):
            raise RecipeError(f"member {self.name!r}: sampling must be none, balanced or loss, got {self.sampling!r}.")
        if self.folds is not None and (self.folds < 2 or self.split_seed is not None):
            raise RecipeError(f"member {self.name!r}: folds must be >= 2 and cannot be combined with split_seed.")
        for stage in self.stages or ():
            unknown = set(stage) - {"size", "epochs", "resize", "lr"}
            if unknown or "size" not in stage or "epochs" not in stage:
                raise RecipeError(
                    f"member {self.name!r}: each stage needs size and epochs (and may set resize, lr); got {stage}."
                )
            if stage.get("resize", self.resize) not in ("squish", "crop", "pad") or int(stage["epochs"]) < 1:
                raise RecipeError(f"member {self.name!r}: invalid stage {stage}.")
            if not isinstance(stage.get("lr", 1.0), (int, float)):
                raise RecipeError(f'member {self.name!r}: a stage\'s lr must be a number ("find" is for the member).')
        self._check_regularisation()

    def _check_regularisation(self) -> None:
        """EMA, mixup/cutmix, label smoothing and checkpoint averaging: numbers in their ranges."""

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        def fail(what: str) -> None:
            raise RecipeError(f"member {self.name!r}: {what}.")

        if self.ema is not None and not (number(self.ema) and 0 < self.ema < 1):
            fail(f"ema is the decay of the weights' moving average, between 0 and 1 (e.g. 0.9998), got {self.ema!r}")
        for key in ("mixup", "cutmix"):
            if not (number(getattr(self, key)) and getattr(self, key) >= 0):
                fail(f"{key} is a Beta distribution's alpha, >= 0 (0: off), got {getattr(self, key)!r}")
        if not (number(self.mix_prob) and 0 < self.mix_prob <= 1):
            fail(f"mix_prob is the share of batches mixed, in (0, 1], got {self.mix_prob!r}")
        if not (isinstance(self.mix_off_epochs, int) and 0 <= self.mix_off_epochs < self.train_epochs):
            fail(f"mix_off_epochs must be an integer from 0 to {self.train_epochs - 1} (fewer than the member's "
                 f"{self.train_epochs} epochs), got {self.mix_off_epochs!r}")  # fmt: skip
        if not (number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            fail(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        last = self.stage_list[-1].epochs
        k = self.average_checkpoints
        if not (isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= last):
            fail(f"average_checkpoints is how many of the last phase's {last} epochs to average, 0 to {last}, "
                 f"got {k!r}")  # fmt: skip
        if self.average_mode not in ("uniform", "greedy"):
            fail(f"average_mode must be uniform or greedy, got {self.average_mode!r}")

    @property
    def stage_list(self) -> list[Stage]:
        """The member's training stages; without `stages`, one stage at its size for its epochs.

        With `lr = "find"` unresolved, stages without their own lr carry "find" (`kagglekit.train.lr_find` replaces
        the member's lr with the found value before any stage trains)."""
        if not self.stages:
            return [Stage(_hw(self.size), self.resize, self.epochs, self.lr)]
        return [
            Stage(_hw(s["size"]), s.get("resize", self.resize), int(s["epochs"]), s.get("lr", self.lr))
            for s in self.stages
        ]

    @property
    def train_epochs(self) -> int:
        """Epochs that train the whole network: the stages' epochs, without head-only ones."""
        return sum(stage.epochs for stage in self.stage_list)

    @property
    def mixes(self) -> bool:
        """Whether training batches are mixed (mixup or cutmix)."""
        return self.mixup > 0 or self.cutmix > 0

    @property
    def step_batch_size(self) -> int:
        """Images per forward/backward pass."""
        return self.batch_size // self.accum

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) it predicts at: the last stage's."""
        return self.stage_list[-1].size


@dataclass(frozen=True)
class Recipe:
    name: str
    members: tuple[Member, ...]
    description: str = ""
    valid_pct: float = 0.2
    split: Literal["random", "stratified"] = "stratified"
    seed: int = 42
    tta: int | Literal["auto"] = 4  # augmented passes averaged with the plain pass; auto: per member, if it helps
    num_workers: int | None = None  # data-loading processes; None: fastai's default on CUDA, 0 on the CPU
    ensemble_weights: Literal["recipe", "tuned"] = "recipe"  # tuned: fit to the honest validation rows
    keep_broken_members: bool = False  # keep members no better than the constant prediction in the ensemble
    source: str = ""

    @property
    def tta_passes(self) -> int:
        """Augmented passes each member predicts with (under "auto", before the choice on validation)."""
        return AUTO_TTA_PASSES if self.tta == AUTO else int(self.tta)

    def member_seed(self, member: Member) -> int:
        return self.seed + self.members.index(member) if member.seed is None else member.seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_MEMBER_KEYS = {f.name for f in fields(Member)}
_RECIPE_KEYS = {f.name for f in fields(Recipe)} - {"name", "members", "source"}


def _member(table: dict[str, Any], defaults: dict[str, Any], where: str) -> Member:
    merged = {**defaults, **table}
    unknown = sorted(set(merged) - _MEMBER_KEYS)
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_MEMBER_KEYS))}.")
    for key in ("name", "arch"):
        if key not in merged:
            raise RecipeError(f"{where}: every member needs a {key!r}.")
    if isinstance(merged.get("size"), list):
        merged["size"] = tuple(merged["size"])
    if isinstance(merged.get("stages"), list):
        merged["stages"] = tuple(merged["stages"])
    try:
        return Member(**merged)
    except RecipeError as error:
        raise RecipeError(f"{where}: {error}") from None
    except TypeError as error:
        raise RecipeError(f"{where}: {error}") from None


def parse_recipe(data: dict[str, Any], name: str, source: str = "<recipe>") -> Recipe:
    data = dict(data)
    defaults = data.pop("defaults", {})
    members_data = data.pop("members", [])
    unknown = sorted(set(data) - _RECIPE_KEYS)
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RECIPE_KEYS))}.")
    if not members_data:
        raise RecipeError(f"{source}: no [[members]]; a recipe needs at least one member.")
    unknown = sorted(set(defaults) - _MEMBER_KEYS)
    if unknown:  # named where they are written, not in the first member that inherits them
        raise RecipeError(f"{source} [defaults]: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(_MEMBER_KEYS))}.")  # fmt: skip
    members = tuple(_member(table, defaults, f"{source} [[members]] #{i + 1}") for i, table in enumerate(members_data))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise RecipeError(f"{source}: member names must be unique, got {names}.")
    recipe = Recipe(name=name, members=members, source=source, **data)
    if not 0 < recipe.valid_pct < 1:
        raise RecipeError(f"{source}: valid_pct must be between 0 and 1, got {recipe.valid_pct}.")
    if recipe.split not in ("random", "stratified"):
        raise RecipeError(f"{source}: split must be 'random' or 'stratified', got {recipe.split!r}.")
    if recipe.ensemble_weights not in ("recipe", "tuned"):
        raise RecipeError(f"{source}: ensemble_weights must be 'recipe' or 'tuned', got {recipe.ensemble_weights!r}.")
    if recipe.tta != AUTO and (not isinstance(recipe.tta, int) or isinstance(recipe.tta, bool) or recipe.tta < 0):
        raise RecipeError(f'{source}: tta must be a number of passes >= 0 or "auto", got {recipe.tta!r}.')
    return recipe


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe file; any problem is a `RecipeError` naming the file (and member and key)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise RecipeError(f"{path}: cannot be read ({error.strerror}).") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not valid TOML ({error}).") from error
    return parse_recipe(data, name=path.stem, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """A recipe as TOML: scalars, then tables, then arrays of tables (the shapes recipes use; no TOML writer is
    among kagglekit's dependencies)."""

    def is_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    def body(table: dict[str, Any]) -> list[str]:
        return [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]

    lines = body({k: v for k, v in data.items() if not isinstance(v, dict) and not is_tables(v)})
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{json.dumps(key)}]", *body(value)]
    for key, value in data.items():
        if is_tables(value):
            for table in value:
                lines += ["", f"[[{json.dumps(key)}]]", *body(table)]
    return "\n".join(lines) + "\n"
