"""Offline packs, notebooks and fan-out on Kaggle, with the real `kaggle` client talking to tests/kaggle_server.py,
and the offline notebook executed top to bottom in a faked Kaggle notebook environment."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from kaggle_notebook import run_offline
from kaggle_server import KERNELS, Dataset, KaggleStandIn, KernelRun, kaggle_stand_in
from typer.testing import CliRunner

from kagglekit.cli import app
from kagglekit.defaults import runs_dir, submissions_dir
from kagglekit.ensemble import Probabilities
from kagglekit.errors import KaggleError
from kagglekit.kaggle import packs as kaggle_packs
from kagglekit.kaggle.fanout import fanout
from kagglekit.kaggle.kernels import NOTEBOOK, NotebookParameters, kernel_slug
from kagglekit.kaggle.notebook import export_member, publish_submission, working_dir
from kagglekit.kaggle.offline import offline_recipe
from kagglekit.recipe import RecipeError, dump_toml, load_recipe
from kagglekit.registry import get_competition
from kagglekit.samples import write_sample
from kagglekit.submission.checks import check_submission
from kagglekit.train import weights_file

pytestmark = pytest.mark.usefixtures("loopback_only")  # no test reaches beyond this machine

USER = "kk-user"
KEY = "kk-secret-0c9d4e7a21"  # a fake key: it must never reach a file kagglekit writes
SLUG = "paddy-disease-classification"
TINY_RECIPE = """
description = "Two tiny members for the notebook test"
valid_pct = 0.25
tta = 0
num_workers = 0

[defaults]
pretrained = true
size = 32
epochs = 1
batch_size = 8
freeze_epochs = 0

[[members]]
name = "first"
arch = "resnet10t"

[[members]]
name = "second"
arch = "resnet10t"
resize = "crop"
"""


@pytest.fixture
def kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KaggleStandIn]:
    """The stand-in Kaggle with the paddy competition; HOME, working folder, temp folder and environment are the
    test's own, with the stand-in's credentials in KAGGLE_USERNAME/KAGGLE_KEY."""
    with kaggle_stand_in(tmp_path, monkeypatch, username=USER, key=KEY, competitions={SLUG: b""}) as server:
        yield server


@pytest.fixture
def cli() -> typer.Typer:
    """The `kagglekit` command line."""
    return app


def _no_credential_in(folder: Path) -> None:
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


def _weights(tmp_path: Path, arch: str = "resnet10t") -> tuple[Path, dict]:
    """A randomly initialised timm model saved as a weights file (no download), and its state dict."""
    import timm
    from safetensors.torch import save_file

    state = timm.create_model(arch, pretrained=False).state_dict()
    path = tmp_path / f"my-{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path, state


# --- inside a Kaggle notebook ---


def test_outputs_go_to_the_working_folder_in_a_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    source = tmp_path / "submissions" / "paddy" / "a.csv"
    source.parent.mkdir(parents=True)
    source.write_text("image_id,label\n200001.jpg,blast\n")
    assert (working_dir(), (runs_dir(), submissions_dir()), publish_submission(source)) == (
        None,
        (Path("runs"), Path("submissions")),
        None,
    )
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("KAGGLEKIT_WORKING_DIR", str(tmp_path / "working"))
    assert working_dir() == tmp_path / "working"
    assert (runs_dir(), submissions_dir()) == (tmp_path / "working" / "runs", tmp_path / "working" / "submissions")
    assert publish_submission(source) == tmp_path / "working" / "submission.csv"
    source.write_text("image_id,label\n200001.jpg,hispa\n")
    publish_submission(source)  # a later submission replaces it
    assert (tmp_path / "working" / "submission.csv").read_text() == source.read_text()
    assert sorted(p.name for p in (tmp_path / "working").iterdir()) == ["submission.csv"]  # no temporary left
    monkeypatch.delenv("KAGGLEKIT_WORKING_DIR")
    assert working_dir() == Path("/kaggle/working")


def test_offline_recipe_points_at_weights_and_keeps_one_member(tmp_path: Path) -> None:
    weights = tmp_path / "input" / "kagglekit-weights"
    path = offline_recipe("paddy", "gpu", tmp_path / "recipes", weights=weights, member="vit-small-squish")
    assert path == tmp_path / "recipes" / "gpu.toml"
    full = load_recipe(get_competition("paddy").recipe_path("gpu"))
    [member] = load_recipe(path).members
    original = full.members[1]
    assert member.name == original.name == "vit-small-squish"
    assert member.pretrained == str(weights)
    assert full.member_seed(original) == 43 == load_recipe(path).member_seed(member)  # trains as in the full run
    assert {k: v for k, v in vars(member).items() if k not in ("pretrained", "seed")} == {
        k: v for k, v in vars(original).items() if k not in ("pretrained", "seed")
    }
    whole = load_recipe(offline_recipe("paddy", "anything", tmp_path, text=TINY_RECIPE))
    assert [m.name for m in whole.members] == ["first", "second"]
    assert whole.members[0].pretrained is True  # no weights given: left alone
    with pytest.raises(RecipeError, match="has no member 'nope'; its members: first, second"):
        offline_recipe("paddy", "tiny", tmp_path, member="nope", text=TINY_RECIPE)
    loss = TINY_RECIPE.replace('resize = "crop"', 'sampling = "loss"')
    with pytest.raises(RecipeError, match="previous member's losses"):
        offline_recipe("paddy", "tiny", tmp_path, member="second", text=loss)


def test_toml_writer_round_trips_recipes() -> None:
    import tomllib

    data = {
        "description": 'quotes " and \\ and ünïcode\n',
        "seed": 3,
        "valid_pct": 2e-05,
        "defaults": {"size": [288, 224], "tasks": {"label": 1.0, "variety": 0.5}, "pretrained": False},
        "members": [{"name": "a", "stages": [{"size": 64, "epochs": 2}, {"size": 128, "epochs": 1}]}, {"name": "b"}],
    }
    assert tomllib.loads(dump_toml(data)) == data


def test_export_member_copies_complete_probabilities(tmp_path: Path) -> None:
    probs = Probabilities(["a", "b"], {"label": np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)}, {"label": ["x", "y"]})
    probs.save(tmp_path / "run" / "ensemble", "valid")
    probs.save(tmp_path / "run" / "ensemble", "test")
    folder = export_member(tmp_path / "run", "m1", tmp_path / "working")
    assert folder == tmp_path / "working" / "members" / "m1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "test_ids.csv",
        "test_label.csv.gz",
        "valid_ids.csv",
        "valid_label.csv.gz",
    ]
    assert Probabilities.load(folder, "test").ids == ["a", "b"]
    with pytest.raises(KaggleError, match="did the run finish"):
        export_member(tmp_path / "nothing", "m1", tmp_path / "working")


# --- offline packs ---


def test_pack_weights_from_a_file_loads_identically(tmp_path: Path) -> None:
    import timm
    import torch

    source, state = _weights(tmp_path)
    pack = kaggle_packs.pack_weights(["resnet10t"], tmp_path / "weights", f"{USER}/my-weights", files=[source])
    found = weights_file(str(tmp_path / "weights"), "resnet10t")
    assert found == tmp_path / "weights" / "resnet10t.safetensors"
    loaded = timm.create_model("resnet10t", pretrained=True, pretrained_cfg_overlay=dict(file=str(found))).state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    config = json.loads((tmp_path / "weights" / "resnet10t.json").read_text())
    cfg = config["pretrained_cfg"]
    assert (config["arch"], config["from"], cfg["num_classes"], cfg["input_size"]) == (
        "resnet10t", source.name, 1000, [3, 176, 176],
    )  # fmt: skip
    assert (cfg["mean"], cfg["std"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    metadata = json.loads(pack.metadata.read_text())
    assert (metadata["id"], metadata["title"], metadata["licenses"]) == (
        f"{USER}/my-weights", "kagglekit weights", [{"name": "other"}],
    )  # fmt: skip
    assert sorted(p.name for p in pack.files) == ["resnet10t.json", "resnet10t.safetensors"]


def test_pack_weights_from_the_hub_cache_and_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    source, _ = _weights(tmp_path)
    repo = tmp_path / "hf" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "model.safetensors").write_bytes(source.read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    kaggle_packs.pack_weights(["resnet10t"], tmp_path / "weights", f"{USER}/my-weights")
    assert json.loads((tmp_path / "weights" / "resnet10t.json").read_text())["from"] == "model.safetensors"
    with pytest.raises(KaggleError, match=r"weights of resnet18 are not in this machine's timm caches.*--from"):
        kaggle_packs.pack_weights(["resnet18"], tmp_path / "weights", f"{USER}/my-weights")
    with pytest.raises(KaggleError, match="timm has no architecture no_such_net"):
        kaggle_packs.pack_weights(["no_such_net"], tmp_path / "weights", f"{USER}/my-weights")
    with pytest.raises(KaggleError, match="does not hold resnet18 weights"):
        kaggle_packs.pack_weights(["resnet18"], tmp_path / "weights", f"{USER}/my-weights", files=[source])


def test_pack_weights_push_creates_a_private_dataset(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    source, _ = _weights(tmp_path)
    result = CliRunner().invoke(
        cli, ["kaggle", "pack-weights", "resnet10t", "weights", "--from", str(source), "--push"]
    )
    assert result.exit_code == 0, result.output
    assert f"Created private dataset: https://www.kaggle.com/datasets/{USER}/kagglekit-weights" in result.output
    dataset = kaggle.datasets[f"{USER}/kagglekit-weights"]
    assert dataset.request["isPrivate"] is True
    assert (dataset.request["title"], dataset.request["licenseName"]) == ("kagglekit weights", "other")
    assert sorted(dataset.files) == ["resnet10t.json", "resnet10t.safetensors"]  # the metadata is not a file
    assert dataset.files["resnet10t.safetensors"] == (tmp_path / "weights" / "resnet10t.safetensors").read_bytes()
    again = CliRunner().invoke(cli, ["kaggle", "pack-weights", "resnet10t", "weights", "--from", str(source), "--push"])
    assert again.exit_code == 2
    assert "already in use" in again.output and "kaggle datasets version -p weights" in again.output
    _no_credential_in(tmp_path / "weights")


@pytest.fixture(scope="module")
def kagglekit_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kagglekit's wheel, built once, offline, from this checkout."""
    folder = tmp_path_factory.mktemp("wheel")
    return kaggle_packs.build_kagglekit_wheel(kaggle_packs.source_checkout(), folder)


def test_kagglekit_wheel_installs_everything_under_its_own_name(kagglekit_wheel: Path) -> None:
    """Every module, plug-in, recipe and notebook, and nothing at site-packages' top level but `kagglekit`."""
    names = set(zipfile.ZipFile(kagglekit_wheel).namelist())
    root = kaggle_packs.source_checkout()
    shipped = {p.relative_to(root).as_posix() for p in (root / "kagglekit").rglob("*.py")}
    for folder, suffixes in (("competitions", ("*.py", "*.toml")), ("notebooks", ("*.py", "*.ipynb"))):
        shipped |= {f"kagglekit/{p.relative_to(root).as_posix()}" for s in suffixes for p in (root / folder).rglob(s)}
    assert shipped - names == set(), "a `pip install` of kagglekit would lack these files"
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"kagglekit"}


def test_pack_wheels_for_the_kaggle_image(
    kaggle: KaggleStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: typer.Typer, kagglekit_wheel: Path
) -> None:
    downloads: list[list[str]] = []

    def pip(args: list[str]) -> None:
        """PyPI is not for tests: a download leaves a stand-in wheel per package."""
        assert args[0] == "download"
        downloads.append(args)
        dest = Path(args[args.index("--dest") + 1])
        version = args[args.index("--python-version") + 1].replace(".", "")
        for package in args[args.index("--dest") + 2 :]:
            (dest / f"{package.replace('-', '_')}-1.0-cp{version}-cp{version}-manylinux2014_x86_64.whl").write_bytes(
                b"w"
            )

    def build(source: Path, dest: Path) -> Path:
        assert source == kaggle_packs.source_checkout()
        return Path(kaggle_packs.shutil.copy(kagglekit_wheel, dest))

    monkeypatch.setattr(kaggle_packs, "_pip", pip)
    monkeypatch.setattr(kaggle_packs, "build_kagglekit_wheel", build)
    result = CliRunner().invoke(cli, ["kaggle", "pack-wheels", "wheels", "--push"])
    assert result.exit_code == 0, result.output
    assert [a[a.index("--python-version") + 1] for a in downloads] == ["3.11", "3.12"]
    for args in downloads:
        assert {"--only-binary=:all:", "--no-deps"} <= set(args)
        assert " --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 " in f" {shlex.join(args)} "
        assert args[-4:] == ["pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pydicom"]
    dataset = kaggle.datasets[f"{USER}/kagglekit-wheels"]
    assert dataset.request["isPrivate"] is True
    assert kagglekit_wheel.name in dataset.files
    assert len(dataset.files) == 1 + 4 * 2
    metadata = json.loads((tmp_path / "wheels" / "dataset-metadata.json").read_text())
    assert metadata["id"] == f"{USER}/kagglekit-wheels"
    assert "pip install --no-index --find-links /kaggle/input/kagglekit-wheels kagglekit" in metadata["description"]
    refused = CliRunner().invoke(cli, ["kaggle", "pack-wheels", "wheels", "-p", "timm", "-p", "torch>=2"])
    assert refused.exit_code == 2
    assert "Not packing torch" in refused.output
    _no_credential_in(tmp_path / "wheels")


# --- notebooks ---


def test_checked_in_notebook_has_the_default_parameters() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    [cell] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert cell.source == NotebookParameters().cell()


def _parameters(notebook: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    """The values the parameters cell of a written notebook sets, with only `env` in the environment."""
    [cell] = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    namespace: dict = {}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env or {})
    try:
        exec("".join(cell["source"]), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {k: v for k, v in namespace.items() if k.isupper()}


def test_push_kernel_sends_an_offline_gpu_notebook(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    from slugify import slugify

    for ref in (f"{USER}/kagglekit-wheels", "someone/timm-weights"):
        kaggle.datasets[ref] = Dataset({}, {})
    args = ["kaggle", "push-kernel", "paddy", "--recipe", "gpu", "--weights-dataset", "someone/timm-weights"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    slug = kernel_slug("paddy", "gpu")
    assert slug == "kagglekit-paddy-gpu"
    assert f"Pushed {USER}/{slug} version 1: https://www.kaggle.com/code/{USER}/{slug}" in result.output
    [push] = kaggle.pushes
    assert (push["slug"], push["kernelType"], push["language"]) == (f"{USER}/{slug}", "notebook", "python")
    assert (push["enableGpu"], push["enableInternet"], push["isPrivate"]) == (True, False, True)
    assert push["datasetDataSources"] == [f"{USER}/kagglekit-wheels", "someone/timm-weights"]
    assert push["competitionDataSources"] == [SLUG]
    assert slugify(push["newTitle"]) == slug  # else the client warns that the title does not match the id
    sent = _parameters(json.loads(push["text"]))
    assert sent["COMPETITION"] == "paddy"
    assert sent["RECIPE"] == "gpu"
    assert sent["RECIPE_TOML"] == get_competition("paddy").recipe_path("gpu").read_text()
    assert (sent["WHEELS_DATASET"], sent["WEIGHTS_DATASET"], sent["MEMBER"]) == (
        f"{USER}/kagglekit-wheels", "someone/timm-weights", "",
    )  # fmt: skip
    assert _parameters(json.loads(push["text"]), {"KAGGLEKIT_MEMBER": "m"})["MEMBER"] == "m"
    folder = tmp_path / "runs" / "paddy" / "kernels" / slug
    metadata = json.loads((folder / "kernel-metadata.json").read_text())
    assert metadata["code_file"] == NOTEBOOK.name
    assert (folder / NOTEBOOK.name).is_file()
    assert KEY not in push["text"]
    _no_credential_in(tmp_path / "runs")


def test_push_kernel_names_sources_kaggle_does_not_know(kaggle: KaggleStandIn, cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["kaggle", "push-kernel", "paddy", "--recipe", "sample"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"Kaggle refused notebook {USER}/kagglekit-paddy-sample" in message
    assert f"dataset source(s) {USER}/kagglekit-wheels" in message  # the sample recipe needs no weights
    assert "pack-wheels DIR --push" in message
    no_push = CliRunner().invoke(cli, ["kaggle", "push-kernel", "paddy", "--no-push", "--owner", "someone"])
    assert no_push.exit_code == 0, no_push.output
    assert len(kaggle.pushes) == 1


# --- fan-out ---


def _member_outputs(names: list[str], vocab: list[str], test_ids: list[str]) -> dict[str, dict[str, bytes]]:
    """What each member's notebook leaves in /kaggle/working: its probabilities (as Probabilities.save writes
    them), plus files the fan-out must not download."""
    rng = np.random.default_rng(0)
    outputs = {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            for split, ids in (("valid", ["100001.jpg", "100002.jpg"]), ("test", test_ids)):
                probs = rng.dirichlet(np.ones(len(vocab)), len(ids)).astype(np.float32)
                Probabilities(ids, {"label": probs}, {"label": vocab}).save(Path(tmp), split)
            files = {f"members/{name}/{p.name}": p.read_bytes() for p in Path(tmp).iterdir()}
        outputs[name] = {**files, "submission.csv": b"x", f"runs/paddy/1_sample/members/{name}/model.safetensors": b"w"}
    return outputs


@pytest.fixture
def paddy_data(tmp_path: Path) -> Path:
    """The competition files the fan-out reads: the sample submission (and train.csv, to be found)."""
    folder = tmp_path / "data" / SLUG
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("image_id,label,variety,age\n100001.jpg,blast,ADT45,45\n")
    (folder / "sample_submission.csv").write_text(
        "image_id,label\n" + "".join(f"2000{i:02d}.jpg,\n" for i in range(12))
    )
    return folder


def test_fanout_pushes_one_notebook_per_member_and_ensembles(
    kaggle: KaggleStandIn, tmp_path: Path, paddy_data: Path, cli: typer.Typer
) -> None:
    paddy = get_competition("paddy")
    vocab = list(paddy.tasks["label"].classes)
    test_ids = pd.read_csv(paddy_data / "sample_submission.csv")["image_id"].tolist()
    members = [m.name for m in load_recipe(paddy.recipe_path("sample")).members]
    kaggle.datasets[f"{USER}/kagglekit-wheels"] = Dataset({}, {})
    outputs = _member_outputs(members, vocab, test_ids[::-1])  # the sample submission's order must win
    for name in members:
        kaggle.kernel_runs[kernel_slug("paddy", "sample", name)] = KernelRun(
            statuses=["QUEUED", "RUNNING", "COMPLETE"], outputs=outputs[name], log="[]"
        )
    args = ["kaggle", "fanout", "paddy", "--recipe", "sample", "--poll-interval", "0", "--data", str(paddy_data)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    pushed = {_parameters(json.loads(p["text"]))["MEMBER"]: p for p in kaggle.pushes}
    assert sorted(pushed) == sorted(members)  # one push per member
    assert all(p["enableGpu"] and not p["enableInternet"] for p in pushed.values())
    assert len(kaggle.calls("GetKernelSessionStatus", KERNELS)) == 3 * len(members)
    [submission] = (tmp_path / "submissions" / "paddy").glob("*_fanout-sample.csv")
    assert check_submission(submission, paddy, paddy_data / "sample_submission.csv").ok
    [run] = (tmp_path / "runs" / "paddy").glob("*_fanout-sample")
    for name in members:  # only the probabilities came down, into the run layout
        assert sorted(p.name for p in (run / "members" / name).iterdir()) == [
            "test_ids.csv", "test_label.csv.gz", "valid_ids.csv", "valid_label.csv.gz",
        ]  # fmt: skip
        assert (run / f"{kernel_slug('paddy', 'sample', name)}.log").read_text() == "[]"  # Kaggle's session log
    assert not (run / "submission.csv").exists() and not (run / "runs").exists()
    tests = [Probabilities.load(run / "members" / name, "test") for name in members]
    mean = np.mean([t.tasks["label"] for t in tests], axis=0)
    expected = np.asarray(vocab)[mean.argmax(1)]
    frame = pd.read_csv(submission)
    assert frame["image_id"].tolist() == test_ids
    assert frame.set_index("image_id").loc[tests[0].ids, "label"].tolist() == expected.tolist()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["artifacts"]["submission"] == str(submission.resolve())
    assert Probabilities.load(run / "ensemble", "test").ids == tests[0].ids
    _no_credential_in(run)


def test_fanout_names_the_member_that_failed_on_kaggle(kaggle: KaggleStandIn, tmp_path: Path, cli: typer.Typer) -> None:
    kaggle.datasets[f"{USER}/kagglekit-wheels"] = Dataset({}, {})
    kaggle.kernel_runs[kernel_slug("paddy", "sample", "resnet18-crop")] = KernelRun(
        statuses=["RUNNING", "ERROR"], failure_message="CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    result = CliRunner().invoke(cli, ["kaggle", "fanout", "paddy", "--recipe", "sample", "--poll-interval", "0"])
    assert result.exit_code == 2
    error = " ".join(result.output.split("error:", 1)[1].split())
    assert error.startswith("Notebook(s) failed on Kaggle: member resnet18-crop (https://www.kaggle.com/code/")
    assert error.endswith("): error: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "resnet10t-squish" not in error  # the member that succeeded is not blamed
    assert kaggle.calls("ListKernelSessionOutput", KERNELS) == []
    assert not (tmp_path / "submissions").exists()


def test_fanout_gives_up_at_the_timeout(kaggle: KaggleStandIn) -> None:
    kaggle.datasets[f"{USER}/kagglekit-wheels"] = Dataset({}, {})
    for member in ("resnet10t-squish", "resnet18-crop"):
        kaggle.kernel_runs[kernel_slug("paddy", "sample", member)] = KernelRun(statuses=["RUNNING"])
    with pytest.raises(KaggleError, match=r"Still running on Kaggle after 0 s: resnet10t-squish \(running"):
        fanout("paddy", "sample", poll_interval=0, timeout=0)


def test_fanout_refuses_members_that_depend_on_each_other(kaggle: KaggleStandIn, tmp_path: Path) -> None:
    recipe = tmp_path / "boosted.toml"
    recipe.write_text(TINY_RECIPE.replace('resize = "crop"', 'sampling = "loss"'))
    with pytest.raises(KaggleError, match="second of recipe 'boosted' sample by the previous member's losses"):
        fanout("paddy", str(recipe), poll_interval=0)
    assert kaggle.requests == []


# --- the notebook itself ---


@pytest.mark.slow
def test_offline_notebook_runs_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kagglekit_wheel: Path
) -> None:
    paddy = get_competition("paddy")
    inputs = tmp_path / "input"
    sample = write_sample(paddy, inputs / "competitions", n_train=40, n_test=10)
    (inputs / "kagglekit-wheels").mkdir(parents=True)  # the older mount: /kaggle/input/<slug>
    (inputs / "kagglekit-wheels" / kagglekit_wheel.name).write_bytes(kagglekit_wheel.read_bytes())
    source, _ = _weights(tmp_path)  # the newer mount: /kaggle/input/datasets/<owner>/<slug>
    kaggle_packs.pack_weights(
        ["resnet10t"], inputs / "datasets" / USER / "kagglekit-weights", f"{USER}/w-pack", files=[source]
    )
    parameters = {
        "KAGGLEKIT_COMPETITION": "paddy",
        "KAGGLEKIT_RECIPE": "tiny",
        "KAGGLEKIT_RECIPE_TOML": TINY_RECIPE,
        "KAGGLEKIT_WEIGHTS_DATASET": f"{USER}/kagglekit-weights",
        "KAGGLEKIT_MEMBER": "second",
    }
    _, working, site = run_offline(NOTEBOOK, tmp_path, monkeypatch, parameters, timeout=170)
    assert (site / "kagglekit" / "competitions" / "paddy.py").is_file() and not (site / "competitions").exists()
    submission = working / "submission.csv"
    report = check_submission(submission, paddy, sample.data_dir / paddy.sample_submission)
    assert report.ok, report.errors
    recipe = load_recipe(working / "recipes" / "tiny.toml")
    assert [(m.name, m.seed, m.pretrained) for m in recipe.members] == [
        ("second", 43, str(inputs / "datasets" / USER / "kagglekit-weights"))
    ]
    exported = working / "members" / "second"
    assert Probabilities.load(exported, "test").ids == pd.read_csv(submission)["image_id"].astype(str).tolist()
