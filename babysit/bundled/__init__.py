"""Files shipped inside the package: bundled recipes, the digits data set and the
deliberately broken custom layers that the ``broken/`` recipes demonstrate."""
