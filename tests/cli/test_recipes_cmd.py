"""`babysit recipes`: the bundled recipes as a table or JSON."""

import json

from click.testing import CliRunner

from babysit.cli import cli


def test_recipes_lists_the_default_with_description_and_path():
    result = CliRunner().invoke(cli, ["recipes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "two-layer-digits (default)" in result.stdout
    assert "two-layer-digits.yaml" in result.stdout


def test_recipes_json_to_stdout():
    result = CliRunner().invoke(cli, ["recipes", "--json", "-"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["command"] == "recipes"
    names = [r["name"] for r in doc["recipes"]]
    assert "two-layer-digits" in names
    entry = doc["recipes"][names.index("two-layer-digits")]
    assert entry["path"].endswith("two-layer-digits.yaml") and entry["description"]
    assert all(set(r) == {"name", "description", "path"} for r in doc["recipes"])


def test_recipes_json_file(tmp_path):
    path = tmp_path / "recipes.json"
    result = CliRunner().invoke(cli, ["recipes", "--json", str(path)])
    assert result.exit_code == 0
    assert "Bundled recipes" in result.stdout
    assert json.loads(path.read_text())["recipes"]


def test_recipes_rejects_unknown_options():
    assert CliRunner().invoke(cli, ["recipes", "--bogus"]).exit_code == 2
