import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from kagglekit import registry
from kagglekit.cli import app
from kagglekit.competition import Submission
from kagglekit.errors import PluginError, RecipeError
from kagglekit.registry import get_competition, list_competitions, register

COMPETITION_WORDS = re.compile(r"\b(paddy|dogs?|planet|xray|siim|unifesp|breeds?)\b", re.IGNORECASE)


def test_builtin_competitions_are_registered():
    assert "paddy" in list_competitions()
    paddy = get_competition("paddy")
    assert paddy.slug == "paddy-disease-classification"
    assert get_competition("paddy-disease-classification").name == "paddy"
    assert paddy.recipe_path("sample").is_file()


def test_unknown_competition_and_recipe_are_clear_errors(paddy):
    with pytest.raises(PluginError, match="Known: .*paddy"):
        get_competition("no-such-competition")
    with pytest.raises(RecipeError, match="available: .*sample"):
        paddy.recipe_path("no-such-recipe")


def test_shared_pipeline_never_names_a_competition():
    package = Path(registry.__file__).parent
    offenders = [
        f"{path.name}: {match}"
        for path in package.rglob("*.py")
        for match in COMPETITION_WORDS.findall(path.read_text())
    ]
    assert offenders == []


def test_third_party_plugin_registers_through_entry_point(tmp_path, monkeypatch):
    (tmp_path / "my_plugin.py").write_text(
        "from kagglekit.competitions.paddy import paddy as base\n"
        "from dataclasses import replace\n"
        "from kagglekit import register\n"
        "@register\n"
        "def thirdparty():\n"
        "    return replace(base(), name='thirdparty', slug='third-party-slug')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint(name="thirdparty", value="my_plugin", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    assert "thirdparty" in list_competitions()
    assert get_competition("third-party-slug").name == "thirdparty"


def test_list_command_shows_slug_tasks_and_metric(monkeypatch):
    from typer.testing import CliRunner

    from kagglekit import cli

    monkeypatch.setattr(cli.console, "width", 200)  # the console was sized when the module was imported
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "paddy-disease-classification" in result.output
    assert "accuracy" in result.output
    assert "single-label" in result.output


def test_a_broken_plugin_fails_when_it_registers():
    from dataclasses import replace

    paddy = get_competition("paddy")
    with pytest.raises(PluginError, match="metric 'log_loss' scores 'probs' submissions, not 'label' ones"):
        register(lambda: replace(paddy, name="broken", metric="log_loss"))
    with pytest.raises(PluginError, match=r"submission.kind 'tags' needs a multi-label target task"):
        replace(paddy, submission=Submission("tags", column="label"), metric="f2_samples")
    with pytest.raises(PluginError, match=r"train_image 'train/\{breed\}/\{image_id\}' names breed"):
        replace(paddy, train_image="train/{breed}/{image_id}")
    with pytest.raises(PluginError, match="metric 'f3' is unknown"):
        replace(paddy, metric="f3")
    with pytest.raises(PluginError, match="target 'disease' is not one of the tasks"):
        replace(paddy, target="disease")
    assert "broken" not in list_competitions()
