"""Recipe loading, validation messages, overrides and the YAML round trip."""

import dataclasses
import pickle
import string
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babysit.errors import RecipeError
from babysit.recipes import (LAYERS, TOP_LEVEL, DataSection, Recipe, data_section, list_recipes,
                             load_recipe, recipe_from_yaml)

GOOD = """\
name: t
seed: 3
data:
  source: builtin:digits
  preprocess: [mean_image]
model:
  init: xavier
  layers:
    - affine: {out: 50}
    - relu
    - affine: {out: 10, init: small}
  reg: 1e-6
optim:
  update: momentum
  lr: 1e-3
train:
  epochs: 2
"""


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- loading ----------------------------------------------------------------


def test_good_recipe_loads_with_defaults(tmp_path):
    path = write(tmp_path, GOOD)
    recipe = load_recipe(str(path))
    assert recipe.name == "t" and recipe.seed == 3 and recipe.path == str(path)
    assert recipe.data.seed == 3 and recipe.data.source == "builtin:digits"
    assert recipe.data.val_fraction == 0.2 and recipe.data.limit is None
    assert recipe.data.preprocess == (("mean_image", {}),)
    assert recipe.model.reg == 1e-6 and isinstance(recipe.model.reg, float)
    assert recipe.optim.lr == 1e-3 and recipe.optim.momentum == 0.9 and recipe.optim.decay is None
    assert recipe.train.epochs == 2 and recipe.train.batch_size == 100
    assert recipe.train.dtype == "float32" and recipe.train.average is None
    assert recipe.model.to_dict() == {
        "init": "xavier", "bias": 0.0, "loss": "softmax", "reg": 1e-6,
        "layers": [{"affine": {"out": 50}}, "relu", {"affine": {"out": 10, "init": "small"}}]}


def test_name_defaults_to_file_stem_and_seed_to_zero(tmp_path):
    path = write(tmp_path, GOOD.replace("name: t\n", "").replace("seed: 3\n", ""), "my-net.yaml")
    recipe = load_recipe(path)
    assert recipe.name == "my-net" and recipe.seed == 0 and recipe.data.seed == 0


def test_bundled_by_name():
    recipe = load_recipe("two-layer-digits")
    assert recipe.path == "bundled:two-layer-digits"
    assert load_recipe().name == "two-layer-digits"
    assert load_recipe("broken/lr-too-high").path == "bundled:broken/lr-too-high"


def test_yaml12_numbers_and_booleans(tmp_path):
    text = GOOD.replace("name: t", "name: yes").replace("lr: 1e-3", "lr: 5E-2") + "  average: .995\n"
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.name == "yes"  # YAML 1.1 would read a boolean
    assert recipe.optim.lr == 0.05 and recipe.train.average == 0.995


def test_layer_options_resolved_and_integral_floats_accepted(tmp_path):
    text = GOOD.replace("- affine: {out: 50}",
                        "- conv: {filters: 4.0}\n    - dropout\n    - affine: {out: 5e1}")
    layers = load_recipe(write(tmp_path, text)).model.layers
    assert layers[0].options == {"filters": 4, "size": 3, "stride": 1, "pad": None}
    assert isinstance(layers[0].options["filters"], int)
    assert layers[1].options == {"keep": 0.5}
    assert layers[2].options == {"out": 50}


def test_custom_layer_forms(tmp_path):
    text = GOOD.replace("    - relu\n", "    - custom: pkg.mod:Leaky\n"
                        "    - custom: {class: pkg.mod:Leaky, kwargs: {alpha: 0.1}, bias: 0.5}\n")
    layers = load_recipe(write(tmp_path, text)).model.to_dict()["layers"]
    assert layers[1] == {"custom": {"class": "pkg.mod:Leaky"}}
    assert layers[2] == {"custom": {"class": "pkg.mod:Leaky", "kwargs": {"alpha": 0.1}, "bias": 0.5}}


def test_sections_are_frozen_and_picklable():
    recipe = load_recipe("two-layer-digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 4
    with pytest.raises(TypeError):
        recipe.model.layers[0].options["out"] = 3
    assert pickle.loads(pickle.dumps(recipe)) == recipe
    assert hash(recipe) == hash(pickle.loads(pickle.dumps(recipe)))


def test_to_dict_is_plain():
    def plain(value):
        if isinstance(value, dict):
            return type(value) is dict and all(plain(v) for v in value.values())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (str, int, float, bool)

    for name, _, _ in list_recipes():
        assert plain(load_recipe(name).to_dict()), name


# -- errors -----------------------------------------------------------------


def test_unknown_key_names_file_line_path_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD.replace("  lr: 1e-3", "  lrate: 1e-3"))
    assert error_of(path) == f"{path}: unknown key 'lrate' at optim (line 15); did you mean 'lr'?"


def test_unknown_top_level_and_layer_option(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("train:", "trian:")))
    assert "unknown key 'trian' at the top level (line 16); did you mean 'train'?" in message
    message = error_of(write(tmp_path, GOOD.replace("{out: 50}", "{outt: 50}")))
    assert "unknown key 'outt' at model.layers.0.affine (line 9); did you mean 'out'?" in message


def test_wrong_type_message(tmp_path):
    path = write(tmp_path, GOOD.replace("lr: 1e-3", "lr: fast"))
    assert error_of(path) == f"{path}: optim.lr must be a positive number, got 'fast' (line 15)"
    for bad, expected in [("lr: -1", "optim.lr must be a positive number, got -1"),
                          ("lr: .nan", "optim.lr must be a positive number, got nan"),
                          ("lr: true", "optim.lr must be a positive number, got True"),
                          ("lr: [1]", "optim.lr must be a positive number, got [1]")]:
        assert expected in error_of(write(tmp_path, GOOD.replace("lr: 1e-3", bad)))
    assert "train.epochs must be a positive integer, got 2.5 (line 17)" in error_of(
        write(tmp_path, GOOD.replace("epochs: 2", "epochs: 2.5")))
    assert "data.val_fraction must be a number in [0, 1), got 1 " in error_of(
        write(tmp_path, GOOD.replace("  preprocess", "  val_fraction: 1\n  preprocess")))


def test_optim_bounds_are_the_engines(tmp_path):
    path = write(tmp_path, GOOD)
    assert load_recipe(path, {"optim.decay_rate": 0}).optim.decay_rate == 0.0   # RMSProp without memory
    assert error_of(path, {"optim.decay_rate": 1}) == \
        "--set optim.decay_rate=1: optim.decay_rate must be a number in [0, 1), got 1"
    assert "model.layers.0.conv.pad must be null or a non-negative integer, got -1 (line 9)" in error_of(
        write(tmp_path, GOOD.replace("- affine: {out: 50}", "- conv: {filters: 2, pad: -1}")))


def test_unknown_choice_suggests_value(tmp_path):
    assert "unknown value 'adm' for optim.update (line 14); did you mean 'adam'?" in error_of(
        write(tmp_path, GOOD.replace("update: momentum", "update: adm")))
    assert "did you mean 'svm'?" in error_of(write(tmp_path, GOOD.replace("reg: 1e-6", "loss: svn")))
    assert "unknown builtin data set 'digts' at data.source (line 4); did you mean 'builtin:digits'?" in \
        error_of(write(tmp_path, GOOD.replace("builtin:digits", "builtin:digts")))
    assert "unknown preprocessing step 'mean_imag' at data.preprocess.0 (line 5); did you mean " \
           "'mean_image'?" in error_of(write(tmp_path, GOOD.replace("[mean_image]", "[mean_imag]")))


def test_unknown_layer_kind_suggests(tmp_path):
    path = write(tmp_path, GOOD.replace("    - relu", "    - rleu"))
    assert error_of(path) == (f"{path}: unknown layer kind 'rleu' at model.layers.1 (line 10); "
                              "did you mean 'relu'?")
    assert "did you mean 'affine'?" in error_of(write(tmp_path, GOOD.replace("- affine: {out: 50}",
                                                                             "- dense: {out: 50}")))


def test_layer_entry_shapes(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("- affine: {out: 50}",
                                                    "- affine: {out: 50}\n      init: small")))
    assert "model.layers.0 must be one layer with its options" in message and "(line 9)" in message
    assert "model.layers.0.affine needs the key 'out' (line 9)" in error_of(
        write(tmp_path, GOOD.replace("- affine: {out: 50}", "- affine")))
    assert "model.layers.1 must be a layer name or a one-key mapping" in error_of(
        write(tmp_path, GOOD.replace("    - relu", "    - 3")))
    assert "must name a class as 'pkg.module:Class', got 'nocolon'" in error_of(
        write(tmp_path, GOOD.replace("    - relu", "    - custom: nocolon")))
    layers = "  layers:\n    - affine: {out: 50}\n    - relu\n    - affine: {out: 10, init: small}"
    assert "model.layers must be a non-empty list" in error_of(
        write(tmp_path, GOOD.replace(layers, "  layers: []")))


def test_missing_required(tmp_path):
    no_model = GOOD[:GOOD.index("model:")] + GOOD[GOOD.index("optim:"):]
    assert "the recipe has no 'model' section" in error_of(write(tmp_path, no_model))
    assert "model needs the key 'layers' (line 2)" in error_of(
        write(tmp_path, "data: {source: x.h5}\nmodel:\n  reg: 0\n"))
    assert "data needs the key 'source'" in error_of(write(tmp_path, "data: {}\nmodel: {layers: [relu]}\n"))
    assert "optim.decay (step) needs the key 'every' (line 16)" in error_of(
        write(tmp_path, GOOD.replace("lr: 1e-3", "lr: 1e-3\n  decay: {kind: step}")))


def test_file_level_errors(tmp_path):
    assert error_of(tmp_path / "none.yaml") == f"{tmp_path / 'none.yaml'}: no such recipe file"
    assert "not a file" in error_of(tmp_path)
    assert "the recipe is empty" in error_of(write(tmp_path, "# nothing\n"))
    assert "the recipe is empty" in error_of(write(tmp_path, ""))
    message = error_of(write(tmp_path, "- a\n- b\n"))
    assert "a recipe must be a mapping of sections" in message and "(line 1)" in message
    message = error_of(write(tmp_path, "data:\n  source: [x\nmodel: 1\n"))
    assert "YAML syntax error" in message and "(line 3)" in message
    message = error_of(write(tmp_path, "data: {source: x.h5}\ndata: {}\n"))
    assert "duplicate key 'data' at the top level (line 2)" in message
    assert "keys must be names, got 1 at optim (line 2)" in error_of(write(tmp_path, "optim:\n  1: 2\n"))
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    assert "cannot read the recipe" in error_of(tmp_path / "bin.yaml")
    assert "unsupported YAML tag" in error_of(write(tmp_path, "data: !!python/object:os.system {}\n"))
    assert "could not determine a constructor" in error_of(
        write(tmp_path, "data: !!python/name:os.system x\n"))


def test_unknown_bundled_name_suggests():
    assert error_of("two-layer-digit") == ("unknown recipe 'two-layer-digit': not a file and not a "
                                           "bundled recipe; did you mean 'two-layer-digits'?")
    assert "did you mean 'broken/lr-too-high'" in error_of("broken/lr-to-high")


def test_data_source_forms(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD.replace("builtin:digits", "{builtin: spiral, n: 90}")))
    assert recipe.data.source == "builtin:spiral" and recipe.data.kind == "builtin"
    assert recipe.data.params == {"n": 90, "classes": 3, "noise": 0.2}
    assert recipe.data.to_dict()["source"] == {"builtin": "spiral", "n": 90, "classes": 3, "noise": 0.2}
    for source, kind, location in [("cifar10:/data/c", "cifar10", "/data/c"), ("mnist:m", "mnist", "m"),
                                   ("d/x.h5", "hdf5", "d/x.h5"), ("x.npz", "npz", "x.npz")]:
        section = data_section(source)
        assert (section.kind, section.location) == (kind, location)
        assert section.to_dict()["source"] == source
    assert "unknown data source 'x.csv'" in error_of(write(tmp_path, GOOD.replace("builtin:digits", "x.csv")))
    assert "unknown key 'dims' at data.source (gaussian)" in error_of(
        write(tmp_path, GOOD.replace("builtin:digits", "{builtin: gaussian, dims: 3}")))
    assert "data.source.classes must be an integer >= 2, got 1" in error_of(
        write(tmp_path, GOOD.replace("builtin:digits", "{builtin: spiral, classes: 1}")))


def test_preprocess_options(tmp_path):
    steps = "[mean_image, {pca: {components: 20}}, whiten]"
    recipe = load_recipe(write(tmp_path, GOOD.replace("[mean_image]", steps)))
    assert recipe.data.preprocess == (("mean_image", {}), ("pca", {"components": 20}),
                                      ("whiten", {"components": None, "eps": 1e-5}))
    assert "data.preprocess.1.pca.components must be null, a positive integer" in error_of(
        write(tmp_path, GOOD.replace("[mean_image]", "[mean_image, {pca: {components: 2.5}}]")))


def test_init_specs(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD.replace("init: xavier", "init: {normal: 0.01}")))
    assert recipe.model.init == {"normal": 0.01} and recipe.model.to_dict()["init"] == {"normal": 0.01}
    assert "did you mean 'he'?" in error_of(write(tmp_path, GOOD.replace("init: xavier", "init: hee")))
    assert "model.init.normal must be a positive number" in error_of(
        write(tmp_path, GOOD.replace("init: xavier", "init: {normal: -1}")))


# -- overrides --------------------------------------------------------------


def test_overrides_parse_strings_as_yaml_and_accept_typed_values(tmp_path):
    path = write(tmp_path, GOOD)
    recipe = load_recipe(path, {"optim.lr": "1e-2", "train.epochs": 3, "model.reg": "0",
                                "optim.decay": "{kind: exp, rate: 0.1}", "data.limit": "100"})
    assert recipe.optim.lr == 0.01 and recipe.train.epochs == 3 and recipe.model.reg == 0.0
    assert recipe.optim.decay == {"kind": "exp", "rate": 0.1} and recipe.data.limit == 100
    assert load_recipe(path, ["optim.lr=2e-3", "seed=7"]).data.seed == 7
    assert load_recipe(path, {"optim.decay": "none"}).optim.decay is None


def test_override_list_index_and_bare_layer_expansion(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD), {"model.layers.0.affine.out": "100",
                                                  "model.layers.1.relu.bias": "0.1",
                                                  "model.layers.2": "{affine: {out: 10}}"})
    assert recipe.model.to_dict()["layers"] == [{"affine": {"out": 100}}, {"relu": {"bias": 0.1}},
                                                {"affine": {"out": 10}}]


def test_override_errors_name_the_override(tmp_path):
    path = write(tmp_path, GOOD)
    assert error_of(path, {"optim.lrate": "1e-3"}) == \
        "--set optim.lrate=1e-3: unknown key 'lrate' at optim; did you mean 'lr'?"
    assert error_of(path, ["optim.lr=fast"]) == \
        "--set optim.lr=fast: optim.lr must be a positive number, got 'fast'"
    assert error_of(path, {"model.layers.7.affine.out": 1}) == \
        "--set model.layers.7.affine.out=1: model.layers is a list of 3 entries; use an index 0..2, got '7'"
    assert error_of(path, {"optim.lr.x": 1}) == \
        "--set optim.lr.x=1: optim.lr is 0.001, not a mapping or a list"
    assert "--set expects KEY=VALUE" in error_of(path, ["optim.lr"])
    assert "--set optim..lr=1: the key must be a dotted path" in error_of(path, ["optim..lr=1"])
    assert error_of(path, ["optim.lr=[1,"]).startswith("--set optim.lr=[1,: YAML syntax error")
    assert error_of(path, {"model.layers.0.afine.out": 1}).startswith("--set model.layers.0.afine.out=1: ")


def test_override_can_supply_missing_key(tmp_path):
    path = write(tmp_path, "model:\n  layers: [{affine: {out: 10}}]\n")
    assert "the recipe has no 'data' section" in error_of(path)
    assert load_recipe(path, {"data.source": "builtin:digits"}).data.source == "builtin:digits"


def test_with_overrides_returns_new_validated_recipe():
    recipe = load_recipe("two-layer-digits")
    changed = recipe.with_overrides({"model.reg": 0.0, "train.epochs": 3})
    assert changed.model.reg == 0.0 and changed.train.epochs == 3
    assert recipe.train.epochs != 3 and changed.path == recipe.path
    assert changed.data.base_dir == recipe.data.base_dir
    with pytest.raises(RecipeError, match=r"^--set train.epochs=0: train.epochs must be a positive integer"):
        recipe.with_overrides({"train.epochs": 0})


# -- round trip -------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, _, _ in list_recipes()])
def test_to_yaml_round_trip(name):
    recipe = load_recipe(name)
    again = recipe_from_yaml(recipe.to_yaml())
    assert again == recipe and again.to_yaml() == recipe.to_yaml()


def test_to_yaml_quotes_number_like_strings(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD.replace("name: t", "name: '1e3'")), {"description": "'true'"})
    assert recipe.name == "1e3" and recipe.description == "true"
    again = recipe_from_yaml(recipe.to_yaml())
    assert again.name == "1e3" and again.description == "true"


def test_list_recipes():
    names = {name: (description, path) for name, description, path in list_recipes()}
    for expected in ["two-layer-digits", "convnet-digits", "deep-tanh-init", "spiral-mlp",
                     "cifar10-two-layer", "broken/lr-too-high", "broken/lr-too-low", "broken/dead-relu", "broken/saturated-tanh",
                     "broken/zero-init", "broken/wrong-backward"]:
        assert expected in names and names[expected][0], expected
        assert names[expected][1].endswith(expected + ".yaml")


def test_data_section_helper():
    section = data_section("builtin:digits", seed=4)
    assert isinstance(section, DataSection) and section.seed == 4 and section.val_fraction == 0.2
    assert data_section(section) is section and data_section(section, seed=5).seed == 5
    with pytest.raises(RecipeError, match="unknown data source"):
        data_section("foo")


# -- property tests ---------------------------------------------------------

KEYS = list(TOP_LEVEL) + ["source", "layers", "affine", "relu", "lr", "update", "epochs", "out", "init",
                          "custom", "class", "kwargs", "builtin", "preprocess", "pca", "decay", "kind"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["builtin:digits", "relu", "x.h5", "adam", "1e-3",
                                                          "pkg.mod:C", "cifar10:", "builtin:spiral"]))
keys = st.one_of(st.sampled_from(KEYS), st.text(string.ascii_letters + "_.", min_size=1, max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=7))
def test_random_recipes_fail_only_with_recipe_error(raw):
    text = yaml.safe_dump(raw)
    try:
        recipe = recipe_from_yaml(text)
    except RecipeError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(recipe, Recipe)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_random_text_fails_only_with_recipe_error(text):
    try:
        recipe_from_yaml(text)
    except RecipeError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(string.ascii_lowercase + "._0123456789", min_size=1, max_size=20),
                       st.one_of(values, st.text(max_size=10)), max_size=3))
def test_random_overrides_fail_only_with_recipe_error(overrides):
    try:
        load_recipe("two-layer-digits", overrides)
    except RecipeError as exc:
        assert "\n" not in str(exc)


def _typos(word):
    edits = set()
    for i in range(len(word) + 1):
        for c in "abxz_":
            edits.add(word[:i] + c + word[i:])
    for i in range(len(word)):
        edits.add(word[:i] + word[i + 1:])
        edits.add(word[:i] + "q" + word[i + 1:])
    return sorted(edits - {word})


SECTION_KEYS = {"data": ["source", "val_fraction", "preprocess", "limit"],
                "model": ["init", "bias", "layers", "loss", "reg"],
                "optim": ["update", "lr", "momentum", "decay_rate", "beta1", "beta2", "eps", "decay"],
                "train": ["epochs", "batch_size", "dtype", "average"]}


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(SECTION_KEYS)), st.data())
def test_key_typos_are_named_with_a_suggestion(section, data):
    key = data.draw(st.sampled_from(SECTION_KEYS[section]))
    typo = data.draw(st.sampled_from(_typos(key)))
    if typo in SECTION_KEYS[section]:
        return
    raw = load_recipe("two-layer-digits").to_dict()
    raw[section][typo] = raw[section].pop(key)
    with pytest.raises(RecipeError) as info:
        recipe_from_yaml(yaml.safe_dump(raw), origin="x.yaml")
    message = str(info.value)
    assert message.startswith(f"x.yaml: unknown key {typo!r} at {section} (line ")
    if len(key) >= 4:
        assert "; did you mean '" in message


def test_layer_schema_matches_engine_constructors():
    layers = pytest.importorskip("babysit.engine.layers")
    import inspect

    assert set(layers.LAYERS) == set(LAYERS)
    for kind, cls in layers.LAYERS.items():
        assert LAYERS[kind] is cls.OPTIONS, kind      # derived, not restated
        accepted = set(inspect.signature(cls).parameters)
        assert accepted == set(LAYERS[kind]), kind
