"""Predicting loose image files with an inference pack or a finished run folder: the ensemble's probabilities for
each readable file, as the run's submission would have them, and the files that cannot be read, named."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import DataError
from kagglekit.pipeline.combine import ensemble_test
from kagglekit.predict.inputs import prepare_test
from kagglekit.predict.pack import InferencePack, load_pack
from kagglekit.predict.submission import member_probabilities


@dataclass
class FilePredictions:
    """`probabilities` of the readable files (ids: file names; None when no file could be read), and the files
    that could not be read (`unreadable`: id, path, reason)."""

    probabilities: Probabilities | None
    unreadable: pd.DataFrame


def predict_files(
    source: Path | InferencePack,
    paths: Sequence[Path],
    tta: int | None = None,
    num_workers: int | None = None,
    cache_dir: Path | None = None,
) -> FilePredictions:
    """The ensemble of `source` (a pack or a finished run folder) on image files: every member with its weight in
    the ensemble and the run's TTA passes (`tta` overrides them), images prepared as the run prepared its test set
    (DICOMs through the same cache). Ids are file names, so two files of the same name are refused."""
    pack = source if isinstance(source, InferencePack) else load_pack(source)
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("No images to predict.")
    repeated = sorted(name for name, count in Counter(p.name for p in paths).items() if count > 1)
    if repeated:
        raise DataError(f"Image file names must be unique (they are the ids); repeated: {', '.join(repeated)}.")
    test = pd.DataFrame({"id": [p.name for p in paths], "path": [str(p.resolve()) for p in paths]})
    data = prepare_test(pack, test, test[["id"]], Path.cwd(), cache_dir)
    readable, passes = data.items.test, pack.tta if tta is None else tta
    if not len(readable):
        return FilePredictions(None, data.undecodable_test)
    tests = [member_probabilities(member, readable, passes, num_workers) for member in pack.members]
    return FilePredictions(ensemble_test(tests, pack.weights, None), data.undecodable_test)
