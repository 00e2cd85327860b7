"""The sequential model: a stack of layers and a loss, behind the model protocol.

Parameter names are ``"<layer index>.<param name>"`` (``"0.W"``, ``"3.gamma"``),
the index being the position in the recipe's layer list; they double as HDF5
paths in run logs. Layer names are ``"<index>.<kind>"`` (``"1.relu"``).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping

import numpy as np

from babysit.engine.parallel import pin_blas
from babysit.engine.user_code import fenced
from babysit.errors import ModelError

# Layer attributes that are state but not parameters (batchnorm's running
# statistics): checkpoints carry them, optimizers never touch them.
BUFFER_NAMES = ("running_mean", "running_var")


class Model:
    """A stack of layers followed by a classification loss.

    ``forward(X)`` returns class scores in test mode. ``loss(X, y)`` runs a train
    mode forward and backward pass and returns ``(loss, grads)``; ``grads`` has
    the keys of ``params`` and includes the L2 term ``0.5 * reg * sum(W**2)``
    (weights only). ``input_grad`` holds dLoss/dX after ``loss``.

    Inside ``with model.recording():`` each layer's output is kept in
    ``outputs`` and the gradient arriving at that output in ``output_grads``
    (both keyed by layer name); it costs nothing when off.

    It implements the model protocol the diagnostics are written against
    (``babysit.diagnostics.protocol.DiagnosableModel``, DEVELOPING.md).

    ``user_layers`` maps the index of each user-written layer (``custom:``) to
    its per-example output shape. Their forward and backward run fenced and
    checked: an exception (SystemExit included, see ``engine/user_code.py``), a result that is not a numeric array of the expected shape (a
    dx with the input's size but flattened is reshaped), or ``grads`` not
    matching ``params`` is the user's input, raised as ModelError naming the
    layer (engine layers run unchecked: their failures are bugs).
    """

    def __init__(self, layers, loss, reg, input_shape, num_classes, dtype, names=None,
                 user_layers=None):
        self.layers = list(layers)
        self.names = list(names) if names else [
            f"{i}.{getattr(layer, 'kind', type(layer).__name__.lower())}"
            for i, layer in enumerate(self.layers)
        ]
        self.loss_fn = loss
        self.reg = float(reg)
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.dtype = np.dtype(dtype)
        self.record = False
        self.outputs: dict[str, np.ndarray] = {}
        self.output_grads: dict[str, np.ndarray] = {}
        self.input_grad: np.ndarray | None = None
        self.params: dict[str, np.ndarray] = {}
        self.weight_names: list[str] = []
        for name, layer in zip(self.names, self.layers):
            index = name.split(".", 1)[0]
            for key, value in layer.params.items():
                self.params[f"{index}.{key}"] = value
            for key in getattr(layer, "weight_names", ()):
                self.weight_names.append(f"{index}.{key}")
        self.user_layers = {int(i): tuple(shape) for i, shape in (user_layers or {}).items()}
        self._user_input_shapes: dict[int, tuple] = {}
        # engine ReLUs directly followed by a max pooling that can take them over
        # (MaxPool.forward_after_relu): run fused unless outputs are recorded
        self._relu_pools = frozenset(
            i for i in range(len(self.layers) - 1)
            if i not in self.user_layers and i + 1 not in self.user_layers
            and getattr(self.layers[i], "kind", None) == "relu"
            and getattr(self.layers[i + 1], "fuses_relu", False))
        self._fused: set[int] = set()
        pin_blas()

    # -- passes -------------------------------------------------------------
    def forward(self, X, train: bool = False) -> np.ndarray:
        """Class scores ``(N, C)`` for inputs ``(N, *input_shape)``; test mode by default."""
        if self.record:
            self.outputs = {}
        # a user layer may write into its input: the caller's data (a Dataset's
        # arrays, evaluated again every epoch) must not change, so it gets a copy
        X = np.array(X, dtype=self.dtype, copy=True) if self.user_layers else np.asarray(X, dtype=self.dtype)
        return self.forward_from(0, X, train)

    def forward_from(self, start: int, out: np.ndarray, train: bool) -> np.ndarray:
        """Run layers ``start``.. on ``out``, the input of layer ``start``.

        A ReLU followed by a max pooling runs as one fused step (see
        ``MaxPool.forward_after_relu``) unless outputs are being recorded.
        """
        record, user = self.record, self.user_layers
        fusable = () if record else self._relu_pools
        self._fused = set()
        index = start
        while index < len(self.layers):
            layer = self.layers[index]
            if index in fusable:
                out = self.layers[index + 1].forward_after_relu(out, train, layer)
                self._fused.add(index)
                index += 2
                continue
            if index in user:
                out = self._user_forward(index, out, train)
            else:
                out = layer.forward(out, train)
            if record:
                self.outputs[self.names[index]] = out
            index += 1
        return out

    def backward(self, dscores: np.ndarray, input_grad: bool = True) -> dict[str, np.ndarray]:
        """Backpropagate ``dscores`` through the layers; returns data-loss gradients.

        ``input_grad=False``: nobody reads dLoss/dX, so a first layer that
        supports it (``needs_input_grad``) skips it and ``input_grad`` is None.
        """
        dout = dscores
        record = self.record
        if record:
            self.output_grads = {}
        first = self.layers[0]
        skip = not input_grad and getattr(first, "needs_input_grad", None) is True
        if skip:
            first.needs_input_grad = False
        user = self.user_layers
        try:
            index = len(self.layers) - 1
            while index >= 0:
                if record:
                    self.output_grads[self.names[index]] = dout
                if index - 1 in self._fused:   # a fused ReLU + pooling: back to the ReLU's input
                    dout = self.layers[index].backward_after_relu(dout)
                    index -= 2
                    continue
                if index in user:
                    dout = self._user_backward(index, dout)
                else:
                    dout = self.layers[index].backward(dout)
                index -= 1
        finally:
            if skip:
                first.needs_input_grad = True
        self.input_grad = dout
        grads = {}
        for name, layer in zip(self.names, self.layers):
            index = name.split(".", 1)[0]
            for key in layer.params:
                grads[f"{index}.{key}"] = layer.grads[key]
        return grads

    # -- checked passes of user layers -----------------------------------------
    def _where(self, index: int) -> str:
        kind = self.names[index].split(".", 1)[-1]
        return f"layer {index} ({kind} {type(self.layers[index]).__name__})"

    def _user_forward(self, index: int, x: np.ndarray, train: bool) -> np.ndarray:
        # a user's layer failing is bad input, not our bug
        with fenced(f"{self._where(index)}: forward raised"):
            out = self.layers[index].forward(x, train)
        expected = (np.shape(x)[0],) + self.user_layers[index]
        if not isinstance(out, np.ndarray) or out.dtype.kind not in "biuf" or out.shape != expected:
            raise ModelError(f"{self._where(index)}: forward must return a numeric array of shape "
                             f"{expected} (batch first, as at build time), got {_describe(out)}")
        self._user_input_shapes[index] = np.shape(x)
        return out

    def _user_backward(self, index: int, dout: np.ndarray) -> np.ndarray:
        layer = self.layers[index]
        with fenced(f"{self._where(index)}: backward raised"):
            dx = layer.backward(dout)
        expected = self._user_input_shapes.get(index)
        if (not isinstance(dx, np.ndarray) or dx.dtype.kind not in "biuf"
                or dx.size != math.prod(expected) or dx.shape[:1] != expected[:1]):
            raise ModelError(f"{self._where(index)}: backward must return dx, a numeric array of the "
                             f"input's shape {expected}, got {_describe(dx)}")
        if dx.shape != expected:  # a layer that flattens may hand back a flat dx: same numbers
            dx = dx.reshape(expected)
        for key, value in layer.params.items():
            grad = layer.grads.get(key) if isinstance(layer.grads, dict) else None
            if not isinstance(grad, np.ndarray) or grad.shape != np.shape(value):
                raise ModelError(f"{self._where(index)}: backward must fill grads[{key!r}] with an "
                                 f"array of shape {np.shape(value)}, got {_describe(grad)}")
        return dx

    def loss(self, X, y, reg: float | None = None, input_grad: bool = True):
        """Train-mode loss and gradients: ``(loss, grads)``.

        ``reg`` overrides the model's L2 strength (``reg=0`` gives the pure data loss).
        ``input_grad=False`` skips dLoss/dX where the first layer allows (training steps).
        """
        scores = self.forward(X, train=True)
        data_loss, dscores = self.loss_fn(scores, np.asarray(y))
        return self.with_reg(data_loss, self.backward(dscores, input_grad), reg)

    def with_reg(self, data_loss: float, grads: dict, reg: float | None = None):
        """``(data loss + L2 term, grads + L2 gradients)``; ``grads`` itself is left as it is."""
        reg_value, reg_grads = self.reg_loss(reg)
        if reg_grads:
            grads = dict(grads)
            for name, g in reg_grads.items():
                # reg_grads are fresh arrays: add in place rather than allocate again
                g += grads[name]
                grads[name] = g
        return float(data_loss) + reg_value, grads

    def reg_loss(self, reg: float | None = None, names=None):
        """The L2 term alone: ``(0.5 * reg * sum(W**2), {weight name: reg * W})``.

        ``names`` narrows the sum to some of ``weight_names`` (gradcheck checks
        one weight's share at a time).
        """
        reg = self.reg if reg is None else float(reg)
        if reg == 0.0:
            return 0.0, {}
        value = 0.0
        grads = {}
        for name in self.weight_names if names is None else names:
            W = self.params[name]
            # one BLAS dot product: no squared copy of W in every training step
            value += 0.5 * reg * float(np.vdot(W, W))
            grads[name] = np.multiply(W, reg, dtype=W.dtype)
        return value, grads

    # -- the model protocol: recording, names, state -------------------------
    @contextlib.contextmanager
    def recording(self):
        """Inside the block, passes record ``outputs``/``output_grads`` (cleared on entry and exit)."""
        self.outputs, self.output_grads = {}, {}
        self.record = True
        try:
            yield self
        finally:
            self.record = False
            self.outputs, self.output_grads = {}, {}

    def kind_of(self, layer_name: str) -> str:
        """The kind of a layer (``"relu"``, ``"affine"``, ``"custom"`` ...) from its name."""
        return layer_name.split(".", 1)[1] if "." in layer_name else layer_name

    def layer_of(self, param_name: str) -> str | None:
        """The layer name (``"<i>.<kind>"``) a parameter ``"<i>.<key>"`` belongs to."""
        index = param_name.split(".", 1)[0]
        return next((name for name in self.names if name.split(".", 1)[0] == index), None)

    def units_axis(self, param_name: str) -> int:
        """The axis of a weight that indexes its layer's units: the columns of an
        affine ``(D_in, D_out)`` weight, the filters of a conv ``(F, C, HH, WW)``."""
        return 1 if np.ndim(self.params[param_name]) == 2 else 0

    def params_of(self, layer_name: str) -> dict[str, np.ndarray]:
        """``{key: array}`` of one layer's parameters (``"W"``, ``"b"`` ...), in place."""
        return dict(self.layers[self.names.index(layer_name)].params)

    def data_grads(self) -> dict[str, np.ndarray]:
        """The data-loss gradients of the last backward pass, by parameter name."""
        grads = {}
        for name, layer in zip(self.names, self.layers):
            index = name.split(".", 1)[0]
            for key, grad in getattr(layer, "grads", {}).items():
                if grad is not None:
                    grads[f"{index}.{key}"] = grad
        return grads

    def buffers(self) -> dict[str, np.ndarray]:
        """Copies of the layer state that is not a parameter (batchnorm running
        statistics), named ``"<i>.<attribute>"``: what a checkpoint needs besides params."""
        buffers = {}
        for name, layer in zip(self.names, self.layers):
            index = name.split(".", 1)[0]
            for attr in BUFFER_NAMES:
                value = getattr(layer, attr, None)
                if isinstance(value, np.ndarray):
                    buffers[f"{index}.{attr}"] = value.copy()
        return buffers

    def load_buffers(self, buffers: Mapping) -> None:
        """Copy :meth:`buffers` back in place; ModelError when one does not fit."""
        by_index = {name.split(".", 1)[0]: layer for name, layer in zip(self.names, self.layers)}
        for key, value in buffers.items():
            index, _, attr = key.partition(".")
            target = getattr(by_index.get(index), attr, None) if attr in BUFFER_NAMES else None
            if not isinstance(target, np.ndarray) or target.shape != np.shape(value):
                raise ModelError(f"layer state {key!r} does not fit this model")
            target[...] = value

    def _random_layers(self) -> dict:
        return {name: layer.rng for name, layer in zip(self.names, self.layers)
                if getattr(layer, "uses_randomness", False) and getattr(layer, "rng", None) is not None}

    def random_state(self) -> dict[str, str]:
        """``{layer name: generator state as JSON}`` of the layers that draw (dropout)."""
        return {name: json.dumps(rng.bit_generator.state, sort_keys=True)
                for name, rng in self._random_layers().items()}

    def set_random_state(self, states: Mapping) -> None:
        """Restore :meth:`random_state` (layers missing from ``states`` keep theirs)."""
        for name, rng in self._random_layers().items():
            if name in states:
                try:
                    rng.bit_generator.state = json.loads(states[name])
                except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
                    raise ModelError(f"the generator state of layer {name} does not parse: {exc}") from None

    # -- helpers for diagnostics ---------------------------------------------
    def predict(self, X, batch_size: int = 1000) -> np.ndarray:
        """Predicted class per example (test mode, in batches)."""
        X = np.asarray(X)
        preds = [np.argmax(self.forward(X[i:i + batch_size]), axis=1)
                 for i in range(0, len(X), batch_size)]
        return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)

    def accuracy(self, X, y, batch_size: int = 1000) -> float:
        if len(X) == 0:
            return float("nan")
        return float(np.mean(self.predict(X, batch_size) == np.asarray(y)))

    def kink_state(self) -> list:
        """Branch taken at every kink during the last forward pass and loss (see Layer.kink_state)."""
        states = []
        for index, layer in enumerate(self.layers):
            fn = getattr(layer, "kink_state", None)
            if fn is None:
                states.append(None)
            elif index in self.user_layers:
                with fenced(f"{self._where(index)}: kink_state raised"):
                    states.append(fn())
            else:
                states.append(fn())
        fn = getattr(self.loss_fn, "kink_state", None)
        states.append(fn() if fn is not None else None)
        return states

    @property
    def has_kinks(self) -> bool:
        return any(getattr(layer, "has_kinks", False) for layer in self.layers) or bool(
            getattr(self.loss_fn, "has_kinks", False))

    @contextlib.contextmanager
    def replay_randomness(self):
        """Inside the block, random layers reuse their last draw (same dropout mask)."""
        random_layers = [layer for layer in self.layers if getattr(layer, "uses_randomness", False)]
        previous = [layer.replay for layer in random_layers]
        for layer in random_layers:
            layer.replay = True
        try:
            yield
        finally:
            for layer, flag in zip(random_layers, previous):
                layer.replay = flag

    def copy_params(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.params.items()}

    def set_params(self, values: Mapping) -> None:
        """Copy ``values`` into the parameters in place (keys and shapes must match)."""
        for name, value in values.items():
            if name not in self.params:
                raise ModelError(f"unknown parameter {name!r}; the model has {sorted(self.params)}")
            target = self.params[name]
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ModelError(f"parameter {name!r} has shape {target.shape}, got {value.shape}")
            target[...] = value

    def num_params(self) -> int:
        return int(sum(v.size for v in self.params.values()))

    def __repr__(self) -> str:
        return f"Model({', '.join(self.names)}; loss={getattr(self.loss_fn, 'kind', self.loss_fn)})"


def _describe(value) -> str:
    """What a user layer returned, for messages: shape and dtype, or the type."""
    if isinstance(value, np.ndarray):
        return f"shape {value.shape} (dtype {value.dtype})"
    return "None" if value is None else f"a {type(value).__name__}"


__all__ = ["Model", "BUFFER_NAMES"]
