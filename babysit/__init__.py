"""babysit: babysit the training of neural networks.

Public API (see README):

    recipe = babysit.load_recipe("two-layer-digits", overrides={"optim.lr": 1e-3})
    data = babysit.load_data(recipe.data)
    model = babysit.build_model(recipe.model, input_shape=data.input_shape,
                                num_classes=data.num_classes,
                                rng=np.random.default_rng(0), dtype=np.float32)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_recipe", "load_data", "build_model"]


def __getattr__(name):
    # Lazy so that `import babysit` (and the CLI start-up) stays cheap and the
    # engine can be imported on its own.
    if name == "load_recipe":
        from babysit.recipes import load_recipe

        return load_recipe
    if name == "load_data":
        from babysit.data import load_data

        return load_data
    if name == "build_model":
        from babysit.engine.builder import build_model

        return build_model
    raise AttributeError(f"module 'babysit' has no attribute {name!r}")
