"""What a diagnosis needs from a model: the model protocol.

Diagnostics are written against this protocol, never against the engine's
layers or attributes, so a second backend (a PyTorch module wrapped by the
``babysit[torch]`` extra, :mod:`babysit.torch`) plugs in by implementing it: nothing in
``babysit.diagnostics`` changes. ``babysit.engine.model.Model`` is the NumPy
implementation; DEVELOPING.md states the same contract in words.

Names: layers have names (``"<index>.<kind>"`` in the engine, module paths
elsewhere) listed in order by ``names``; parameters are dotted names
(``"0.W"``, ``"features.0.weight"``), usable as HDF5 paths.

Arrays are NumPy arrays; ``params`` are updated in place by optimizers (a
backend whose tensors live elsewhere exposes NumPy views of them).
"""

from __future__ import annotations

from typing import Any, ContextManager, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class LossFunction(Protocol):
    """``loss(scores (N, C), y (N,)) -> (mean loss, dscores (N, C))``."""

    kind: str
    has_kinks: bool

    def __call__(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]: ...

    def expected_initial_loss(self, num_classes: int) -> float:
        """The loss of uniform predictions: ln C (softmax), C - 1 (multiclass SVM)."""
        ...


@runtime_checkable
class DiagnosableModel(Protocol):
    """A classifier the diagnostics can run, record, check and checkpoint.

    Passes:

    * ``forward(X, train=False) -> scores (N, C)``: test mode by default;
      ``train=True`` uses batch statistics and draws dropout masks.
    * ``loss(X, y, reg=None, input_grad=True) -> (loss, grads)``: a train-mode
      forward and backward pass; ``grads`` has the keys of ``params`` and
      includes the L2 term ``0.5 * reg * sum(W**2)`` over ``weight_names``
      (``reg=None``: the model's own ``reg``; ``reg=0``: the data loss).
      ``input_grad=False`` may skip dLoss/dX (training steps never read it).
    * ``forward_from(index, x, train) -> scores``: the layers from position
      ``index`` on, applied to ``x``, the input of that layer (gradient checks
      of one layer's input).
    * ``reg_loss(reg=None, names=None) -> (value, {weight: reg * W})``: the L2
      term alone, over ``names`` (default ``weight_names``).
    * ``data_grads() -> {param: grad}``: the data-loss gradients of the last backward.

    Recording: inside ``with model.recording():`` every pass keeps each
    layer's output in ``outputs[layer]`` and the gradient arriving at that
    output in ``output_grads[layer]``; ``input_grad`` holds dLoss/dX after
    ``loss``. Nothing is kept outside the block.

    Randomness: ``with model.replay_randomness():`` random layers reuse their
    last draw (the same dropout mask for f(x+h), f(x-h) and the analytic pass);
    ``random_state() -> {layer: text}`` / ``set_random_state(states)`` save and
    restore the generators (exact resume).

    Kinks: ``has_kinks``; ``kink_state()`` returns, after a pass, a list that
    changes iff some input crossed a point of non-differentiability (ReLU
    sign, max argmax, SVM margin), compared with ``np.array_equal`` entry by entry.

    State: ``copy_params()`` / ``set_params(values)``; ``buffers()`` /
    ``load_buffers(values)`` (state that is not a parameter: running statistics).

    Structure: ``kind_of(layer)`` (``"relu"``, ``"tanh"``, ``"affine"``, ...:
    what the activation statistics key on), ``layer_of(param)``,
    ``params_of(layer) -> {key: array}``, ``units_axis(weight)`` (the axis
    of a weight that indexes its layer's units: symmetric units are copies
    along it).

    A float64 model for gradient checks comes from the backend's builder
    (``dtype=np.float64``): every parameter of it is float64.

    Optional (looked up with ``getattr``): ``make_optimizer(optim_section)``,
    the optimizer the Solver trains with (the torch backend's torch.optim);
    ``layer_inputs`` / ``layer_input_grads``, recorded alongside ``outputs``:
    each layer's real input and the gradient through that layer alone, which
    gradient checks use instead of the chain rule "layer i's input is layer
    i-1's output" (a torch module's graph need not be a chain).
    """

    names: Sequence[str]
    params: dict[str, np.ndarray]
    weight_names: Sequence[str]
    num_classes: int
    dtype: np.dtype
    reg: float
    loss_fn: LossFunction
    outputs: dict[str, np.ndarray]
    output_grads: dict[str, np.ndarray]
    input_grad: np.ndarray | None

    @property
    def has_kinks(self) -> bool: ...

    def forward(self, X, train: bool = False) -> np.ndarray: ...

    def forward_from(self, start: int, out: np.ndarray, train: bool) -> np.ndarray: ...

    def loss(self, X, y, reg: float | None = None, input_grad: bool = True) -> tuple[float, dict]: ...

    def reg_loss(self, reg: float | None = None, names=None) -> tuple[float, dict]: ...

    def data_grads(self) -> dict[str, np.ndarray]: ...

    def recording(self) -> ContextManager[Any]: ...

    def replay_randomness(self) -> ContextManager[Any]: ...

    def kink_state(self) -> list: ...

    def kind_of(self, layer_name: str) -> str: ...

    def layer_of(self, param_name: str) -> str | None: ...

    def params_of(self, layer_name: str) -> dict[str, np.ndarray]: ...

    def units_axis(self, param_name: str) -> int: ...

    def copy_params(self) -> dict[str, np.ndarray]: ...

    def set_params(self, values: Mapping) -> None: ...

    def buffers(self) -> dict[str, np.ndarray]: ...

    def load_buffers(self, buffers: Mapping) -> None: ...

    def random_state(self) -> dict[str, str]: ...

    def set_random_state(self, states: Mapping) -> None: ...

    def predict(self, X, batch_size: int = 1000) -> np.ndarray: ...

    def accuracy(self, X, y, batch_size: int = 1000) -> float: ...


__all__ = ["DiagnosableModel", "LossFunction"]
