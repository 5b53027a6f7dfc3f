"""The README's notebook section runs as written, and its stages give what `run` gives."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import kagglekit as kk
from kagglekit.samples import writer

README = Path(__file__).resolve().parents[1] / "README.md"


def notebook_blocks() -> list[str]:
    """The Python blocks of the README's "In a notebook" section."""
    section = README.read_text().split("### In a notebook", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.mark.slow
def test_readme_notebook_runs_and_matches_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(writer, "ensure_sample", partial(writer.ensure_sample, n_train=60, n_test=12))
    blocks = notebook_blocks()
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # as a notebook runs its cells

    written = namespace["written"]
    assert written.check.ok and written.path.parent == Path("submissions/paddy")
    batch, results = (plt.figure(n) for n in plt.get_fignums()[-2:])  # dls.show_batch, learn.show_results
    classes = namespace["data"].vocab["label"]
    assert [ax.get_title() in classes for ax in batch.axes if ax.images] == [True] * 6
    assert [ax.get_title().split("\n")[1] in classes for ax in results.axes if ax.images] == [True] * 6
    plt.close("all")
    assert len(namespace["frame"]) == len(namespace["data"].items.test)

    result = kk.run("paddy", "sample", data=namespace["data_dir"], runs_dir=tmp_path / "runs")
    staged, whole = namespace["ensemble"], result.ensemble
    assert staged.valid.ids == whole.valid.ids and staged.test.ids == whole.test.ids
    for split in ("valid", "test"):
        np.testing.assert_allclose(getattr(staged, split).tasks["label"], getattr(whole, split).tasks["label"],
                                   atol=1e-6)  # fmt: skip
    assert staged.score == whole.score
    pd.testing.assert_frame_equal(pd.read_csv(written.path), pd.read_csv(result.submission))
