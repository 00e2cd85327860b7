"""builtin:gratings, the CIFAR-sized generated images of the convnet-gratings recipe."""

import numpy as np
import pytest

from babysit.data import load_data
from babysit.data.builtins import BUILTINS, MAX_GENERATED_VALUES, gratings, read_builtin
from babysit.errors import DataError
from babysit.recipes import load_recipe

DEFAULTS = {name: default for name, (default, _) in BUILTINS["gratings"].items()}


def test_defaults_are_cifar_sized_balanced_and_seeded():
    assert DEFAULTS == {"n": 3000, "classes": 10, "size": 32, "noise": 0.3}
    raw = read_builtin("gratings", dict(DEFAULTS, n=200), seed=0)
    X, y = raw.splits["train"]
    assert X.shape == (200, 3, 32, 32) and X.dtype == np.float32 and np.all(np.isfinite(X))
    assert np.bincount(y).tolist() == [20] * 10
    again = read_builtin("gratings", dict(DEFAULTS, n=200), seed=0).splits["train"]
    other = read_builtin("gratings", dict(DEFAULTS, n=200), seed=1).splits["train"]
    assert np.array_equal(X, again[0]) and np.array_equal(y, again[1])
    assert not np.array_equal(X, other[0])


def test_the_class_is_the_orientation_of_the_stripes():
    # the strongest frequency of each class's mean power spectrum points across its stripes
    classes, size = 6, 32
    X, y = gratings(600, classes, size, 0.0, np.random.default_rng(0))
    freq = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    for label in range(classes):
        grey = X[y == label].mean(axis=1)
        grey = grey - grey.mean(axis=(1, 2), keepdims=True)
        power = (np.abs(np.fft.fft2(grey)) ** 2).mean(axis=0)
        power[0, 0] = 0
        peak = np.unravel_index(np.argmax(power), power.shape)
        angle = np.arctan2(fy[peak], fx[peak]) % np.pi
        expected = np.pi * label / classes
        gap = min(abs(angle - expected), np.pi - abs(angle - expected))
        assert gap < np.pi / classes / 2, (label, angle, expected)


def test_image_size_and_noise_are_options():
    X, _ = gratings(10, 3, 16, 1.0, np.random.default_rng(0))
    quiet, _ = gratings(10, 3, 16, 0.0, np.random.default_rng(0))
    assert X.shape == (10, 3, 16, 16)
    assert X.std() > quiet.std()


def test_a_request_too_large_is_a_clear_error():
    with pytest.raises(DataError, match="would be over"):
        read_builtin("gratings", dict(DEFAULTS, n=MAX_GENERATED_VALUES), seed=0)


def test_the_bundled_recipe_reads_it():
    recipe = load_recipe("convnet-gratings", overrides=["data.source.n=100"])
    data = load_data(recipe.data)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    conv_layers = [layer for layer in recipe.model.to_dict()["layers"] if "conv" in layer]
    assert len(conv_layers) == 3
