from pathlib import Path

import pytest

from kagglekit.recipe import Member, RecipeError, load_recipe, parse_recipe
from kagglekit.registry import get_competition, list_competitions


def test_every_shipped_recipe_parses():
    paths = [p for name in list_competitions() for p in get_competition(name).recipes_dir.glob("*.toml")]
    assert paths
    for path in paths:
        recipe = load_recipe(path)
        assert recipe.members, path


def test_defaults_apply_and_members_override(paddy):
    recipe = load_recipe(paddy.recipe_path("sample"))
    assert len({(m.arch, m.resize) for m in recipe.members}) == len(recipe.members) >= 2
    assert all(m.size == 64 for m in recipe.members)


def test_effective_batch_size_and_accumulation():
    member = Member(name="m", arch="resnet18", batch_size=64, accum=4)
    assert member.step_batch_size == 16
    with pytest.raises(RecipeError, match="not divisible by accum 4"):
        Member(name="m", arch="resnet18", batch_size=30, accum=4)
    with pytest.raises(RecipeError, match="accum must be >= 1"):
        Member(name="m", arch="resnet18", accum=0)


def test_typos_are_errors_not_defaults():
    with pytest.raises(RecipeError, match="unknown key.*epoch"):
        parse_recipe({"members": [{"name": "m", "arch": "resnet18", "epoch": 3}]}, "r")
    # named where the typo is written, not in the first member that inherits it
    with pytest.raises(RecipeError, match=r"^<recipe> \[defaults\]: unknown key\(s\) lrr;"):
        parse_recipe({"defaults": {"lrr": 0.1}, "members": [{"name": "m", "arch": "resnet18"}]}, "r")
    with pytest.raises(RecipeError, match="unknown key.*valid_percent"):
        parse_recipe({"valid_percent": 0.1, "members": [{"name": "m", "arch": "a"}]}, "r")
    with pytest.raises(RecipeError, match="needs a 'arch'"):
        parse_recipe({"members": [{"name": "m"}]}, "r")
    with pytest.raises(RecipeError, match="unique"):
        parse_recipe({"members": [{"name": "m", "arch": "a"}, {"name": "m", "arch": "b"}]}, "r")


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("members = [\n")
    with pytest.raises(RecipeError, match=str(Path(path).name)):
        load_recipe(path)
