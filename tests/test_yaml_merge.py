"""YAML merge keys override instead of being rejected as duplicates (issue 10 item 15)."""

import textwrap

import pytest

from babysit.errors import RecipeError
from babysit.recipes import load_recipe


def recipe(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    return load_recipe(str(path))


def test_a_key_written_beside_a_merge_overrides_it(tmp_path):
    spec = recipe(tmp_path, """\
        data: {source: "builtin:digits"}
        model: {layers: [{affine: {out: 10}}]}
        optim: {<<: {lr: 1.0, momentum: 0.5}, lr: 0.03, update: momentum}
        """)
    assert spec.optim.lr == 0.03 and spec.optim.momentum == 0.5


def test_anchors_and_merges_share_settings(tmp_path):
    spec = recipe(tmp_path, """\
        data: {source: "builtin:digits"}
        model:
          layers:
            - affine: &wide {out: 50, init: he}
            - relu
            - affine: {<<: *wide, out: 10}
        optim:
          <<: [{lr: 0.5, update: sgd}, {lr: 0.9, update: adam, beta1: 0.8}]
        """)
    layers = spec.model.to_dict()["layers"]
    assert layers[2] == {"affine": {"out": 10, "init": "he"}}
    # of several merged mappings the first that has a key wins (YAML's rule)
    assert (spec.optim.lr, spec.optim.update, spec.optim.beta1) == (0.5, "sgd", 0.8)


@pytest.mark.parametrize("text, message", [
    ("optim: {lr: 0.1, lr: 0.2}\n", "duplicate key 'lr' at optim (line 1)"),
    ("optim: {<<: {lr: 0.1, lr: 0.2}}\n", "duplicate key 'lr' at optim (line 1)"),
    ("optim: {<<: {lr: 0.1}, <<: {lr: 0.2}}\n", "duplicate key '<<' at optim (line 1)"),
    ("optim: {<<: 3}\n", "'<<' at optim (line 1) must merge a mapping"),
])
def test_real_duplicates_are_still_errors(tmp_path, text, message):
    with pytest.raises(RecipeError) as exc:
        recipe(tmp_path, "data: {source: 'builtin:digits'}\n" + text)
    assert message.replace("line 1", "line 2") in str(exc.value)
