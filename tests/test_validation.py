"""babysit.validation: rules, key checks and option tables (the parts the engine relies on)."""

import pytest

from babysit.errors import BabysitError, ModelError
from babysit.validation import (HALF_OPEN_UNIT, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, REQUIRED,
                                check_keys, resolve_options)

TABLE = {"out": (REQUIRED, POSITIVE_INT), "alpha": (0.5, POSITIVE)}


def test_resolve_options_fills_defaults_in_table_order():
    assert list(resolve_options({"alpha": 2, "out": 3.0}, TABLE, "layer").items()) == \
        [("out", 3), ("alpha", 2)]
    assert resolve_options({"out": 1}, TABLE, "layer") == {"out": 1, "alpha": 0.5}


def test_resolve_options_key_error_is_for_unknown_and_missing_keys_only():
    with pytest.raises(TypeError, match="unknown key 'outs' in layer; valid keys: out, alpha"):
        resolve_options({"outs": 1}, TABLE, "layer", ValueError, key_error=TypeError)
    with pytest.raises(TypeError, match="layer needs the option 'out'"):
        resolve_options({}, TABLE, "layer", ValueError, key_error=TypeError)
    with pytest.raises(ValueError, match="layer: out must be a positive integer, got 0"):
        resolve_options({"out": 0}, TABLE, "layer", ValueError, key_error=TypeError)
    with pytest.raises(ModelError, match="needs the option 'out'"):   # default: the one error class
        resolve_options({}, TABLE, "layer", ModelError)


def test_check_keys_with_an_empty_table_says_none():
    with pytest.raises(BabysitError, match="unknown key 'alpha' in relu; valid keys: none$"):
        check_keys({"alpha": 1}, {}, "relu")


def test_or_null_rules():
    rule = NON_NEGATIVE_INT.or_null()
    assert rule.convert(None) is None and rule.convert(0) == 0
    with pytest.raises(ValueError):
        rule.convert(-1)
    assert not HALF_OPEN_UNIT.accepts(None) and HALF_OPEN_UNIT.accepts(0)
