"""Fan-out: one Kaggle notebook per ensemble member, their probabilities ensembled here.

It works because members only meet through their saved probabilities: each notebook trains one member and leaves
its probabilities in its output, which is downloaded into a local run folder laid out like any other run, and
the same stages as a local run (`ensemble_members`, `write_and_check`) turn them into a checked submission.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kagglekit._io import timestamp
from kagglekit.data.locate import locate_data
from kagglekit.defaults import runs_dir as default_runs_dir
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import KaggleError
from kagglekit.kaggle.auth import Credentials, client_errors, find_credentials, kaggle_client
from kagglekit.kaggle.kernels import Kernel, push_notebook, write_kernel
from kagglekit.kaggle.packs import owner_of
from kagglekit.kaggle.retry import retrying
from kagglekit.pipeline.combine import ensemble_members
from kagglekit.pipeline.data import labels_only
from kagglekit.pipeline.members import MemberOutput
from kagglekit.pipeline.write import SubmissionOutput, write_and_check
from kagglekit.recipe import Recipe, load_recipe
from kagglekit.registry import get_competition
from kagglekit.runs import RunRecord

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

FINAL = {"complete", "error", "cancel_acknowledged"}  # kagglesdk KernelWorkerStatus names that end a session


@dataclass
class FanoutResult:
    folder: Path
    kernels: list[Kernel]
    written: SubmissionOutput
    notes: list[str] = field(default_factory=list)


def _poll(api: KaggleApi, credentials: Credentials, kernels: list[Kernel]) -> None:
    for kernel in kernels:
        if kernel.status in FINAL:
            continue
        with client_errors(f"get the status of notebook {kernel.ref}", credentials):
            response = retrying(lambda k=kernel: api.kernels_status(k.ref), f"get the status of {kernel.ref}")
        kernel.status = response.status.name.lower()
        kernel.failure = response.failure_message or None


def _wait(
    api: KaggleApi, credentials: Credentials, kernels: list[Kernel], poll_interval: float, timeout: float, console
) -> None:
    """Poll every session until each has ended, or fail at the timeout naming those still running."""
    deadline = time.monotonic() + timeout
    with console.status("Waiting for the notebooks on Kaggle…") as status:
        while True:
            _poll(api, credentials, kernels)
            status.update("Kaggle: " + ", ".join(f"{k.member} {k.status}" for k in kernels))
            if all(k.status in FINAL for k in kernels):
                return
            if time.monotonic() + poll_interval > deadline:
                running = ", ".join(f"{k.member} ({k.status}, {k.url})" for k in kernels if k.status not in FINAL)
                raise KaggleError(
                    f"Still running on Kaggle after {timeout:.0f} s: {running}. Their outputs stay on Kaggle "
                    "(`kaggle kernels output OWNER/SLUG -p DIR`)."
                )
            time.sleep(poll_interval)


def _download(api: KaggleApi, credentials: Credentials, kernel: Kernel, folder: Path) -> tuple[Probabilities, ...]:
    """The member's probabilities from the notebook's output, into `folder/members/<member>/` (the run layout);
    only those files, never the model weights the session also saved."""
    member = str(kernel.member)
    pattern = rf"^members/{re.escape(member)}/(valid|test)_[A-Za-z0-9_.-]+$"
    with client_errors(f"download the output of notebook {kernel.ref}", credentials):
        retrying(lambda: api.kernels_output(kernel.ref, str(folder), file_pattern=pattern, force=True, quiet=True),
                 f"download the output of {kernel.ref}")  # fmt: skip
    member_dir = folder / "members" / member
    try:
        return Probabilities.load(member_dir, "valid"), Probabilities.load(member_dir, "test")
    except (OSError, ValueError, KeyError) as error:
        raise KaggleError(
            f"Member {member}: notebook {kernel.ref} finished but its output lacks its probabilities ({error}); "
            f"its log is in {folder / (kernel.ref.split('/')[1] + '.log')} when Kaggle kept one."
        ) from error


def _collect(
    api: KaggleApi, credentials: Credentials, kernels: list[Kernel], recipe: Recipe, record: RunRecord,
    poll_interval: float, timeout: float, console: Console,
) -> list[MemberOutput]:  # fmt: skip
    """Wait for every member's notebook, then download each member's probabilities into the run folder; a
    notebook that failed on Kaggle is a `KaggleError` naming its member and Kaggle's message."""
    with record.step("wait"):
        _wait(api, credentials, kernels, poll_interval, timeout, console)
        record.metrics["kernels"] = [asdict(k) for k in kernels]
    failed = [k for k in kernels if k.status != "complete"]
    if failed:
        record.status = "failed on Kaggle"
        record.save()
        raise KaggleError(
            "Notebook(s) failed on Kaggle: "
            + "; ".join(f"member {k.member} ({k.url}): {k.status}: {k.failure or 'no message'}" for k in failed)
        )
    with record.step("download"):
        outputs = [_download(api, credentials, k, record.folder) for k in kernels]
    return [MemberOutput(m.name, valid, test, m.weight, m.arch)
            for m, (valid, test) in zip(recipe.members, outputs, strict=True)]  # fmt: skip


def _refuse_sequential(recipe: Recipe) -> None:
    sequential = [m.name for m in recipe.members if m.sampling == "loss"]
    if sequential:
        raise KaggleError(
            f"Member(s) {', '.join(sequential)} of recipe {recipe.name!r} sample by the previous member's losses, so "
            "the members cannot train apart; push the whole recipe with `kagglekit kaggle push-kernel`."
        )


def fanout(
    competition: str,
    recipe: str = "gpu",
    *,
    owner: str | None = None,
    wheels_dataset: str | None = None,
    weights_dataset: str | None = None,
    data: Path | None = None,
    runs_dir: Path | None = None,
    submissions_dir: Path | None = None,
    poll_interval: float = 60.0,
    timeout: float = 12 * 3600.0,
    console: Console | None = None,
) -> FanoutResult:
    """Push one notebook per ensemble member, wait for all, download their probabilities and ensemble them here.

    The run folder `runs/<competition>/<stamp>_fanout-<recipe>/` holds the pushed notebooks (kernels/), each
    member's probabilities (members/<name>/) and the ensemble, as a local run would; the checked submission goes
    to `submissions/<competition>/`. The members' probabilities meet in the same stages as in a local run
    (`ensemble_members`, `write_and_check`): with `data` (the competition's files here) the ensemble is scored on
    the validation labels, multi-label thresholds are tuned, and the rows follow the sample submission; without it,
    the recipe-weighted mean with 0.5 thresholds.
    """
    spec = get_competition(competition)
    recipe_path = spec.recipe_path(recipe)
    parsed = load_recipe(recipe_path)
    _refuse_sequential(parsed)
    labels = labels_only(spec, locate_data(spec, data)) if data else None  # a wrong --data fails before a push
    console = console or Console()
    credentials = find_credentials()
    api = kaggle_client(credentials)
    owner = owner_of(owner, credentials)
    name = f"fanout-{parsed.name}"
    folder = Path(runs_dir or default_runs_dir()) / spec.name / f"{timestamp()}_{name}"
    config: dict[str, Any] = {"competition": spec.name, "recipe": parsed.to_dict(), "owner": owner}
    record = RunRecord(folder, config={**config, "command": shlex.join(sys.argv)})
    with record.step("push"):
        kernels = [push_notebook(api, credentials, write_kernel(folder / "kernels", spec.name, str(recipe_path), owner,
                         wheels_dataset=wheels_dataset, weights_dataset=weights_dataset, member=m.name), m.name)
                   for m in parsed.members]  # fmt: skip
        for kernel in kernels:
            console.print(f"Pushed {kernel.member}: {kernel.url}")
    members = _collect(api, credentials, kernels, parsed, record, poll_interval, timeout, console)
    with record.step("ensemble"):
        ensemble = ensemble_members(members, parsed, labels or spec)
        ensemble.save(folder / "ensemble")
    with record.step("submission"):
        written = write_and_check(ensemble, labels, name, submissions_dir, folder)
        record.artifact("submission", written.path)
        record.metrics["submission_check"] = written.check.to_dict()
    notes = [*ensemble.notes, *([] if labels else ["no --data: the ids were not compared with the sample submission"])]
    record.notes.extend(notes)
    record.status = "finished" if written.check.ok else "finished: submission check failed"
    record.save()
    return FanoutResult(folder, kernels, written, notes)
