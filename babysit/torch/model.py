"""A torch ``nn.Module`` behind babysit's model protocol.

:class:`TorchModel` implements ``babysit.diagnostics.protocol.DiagnosableModel``
(DEVELOPING.md, "The model protocol"), so every diagnosis runs on a user's
module unchanged. The contract, as the torch side meets it:

* ``params``: the module's trainable parameters by module path
  (``features.0.weight``), as NumPy arrays sharing memory with the tensors
  (CPU): optimizers update them in place, checkpoints read and write them.
* passes: ``forward(X, train)`` (test mode under ``no_grad``), ``loss``
  (a train-mode forward keeping the graph, the engine's loss function on the
  scores, then ``scores.backward(dscores)``; a plain training step takes the
  same loss in torch; the L2 term and its gradient ``reg * W`` are added in
  NumPy, as the engine does), ``forward_from(i, x)``
  (a whole hooked pass with layer ``i``'s input replaced by ``x``: exact for
  any graph, see :mod:`babysit.torch.passes`).
* names: layers are the leaf-module and custom-Function calls in execution
  order (module path or Function class name); when the module's result is not
  the last layer's output, a last pseudo-layer ``output`` (kind ``output``)
  holds the scores. ``kind_of`` maps module types to babysit's kinds.
* recording: ``outputs``/``output_grads`` as for the engine, plus
  ``layer_inputs``/``layer_input_grads`` (each layer's real input and the
  gradient through that layer alone), which gradient checks use instead of
  assuming that layer ``i``'s input is layer ``i - 1``'s output.
* randomness: the model owns a torch CPU generator state, swapped in around
  its train-mode passes (only when its module draws: dropout, functional or
  not), so ``random_state()`` / ``set_random_state()`` give bit-identical
  resumes and ``replay_randomness()`` restarts every train-mode pass from the
  state the last free one started from (the same dropout masks).
* kinks: ``kink_state()`` is the branch record of the last ``forward_from``
  pass (or recorded pass under ``replay_randomness()``) plus the loss's.
* the optimizer: ``make_optimizer(section)`` gives torch.optim behind the
  engine's optimizer interface (:mod:`babysit.torch.optim`); the Solver asks
  for it.

``copy_params``, ``set_params``, ``reg_loss``, ``with_reg``, ``loss``, ``predict``,
``accuracy`` and ``num_params`` are the engine Model's own methods: they are
written against the protocol's members only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from babysit.engine.model import Model
from babysit.engine.user_code import fenced
from babysit.errors import ModelError
from babysit.torch.kinds import OUTPUT_KIND, is_weight
from babysit.torch.passes import OUTPUT, Tap, hooked, to_numpy

# The global torch generator is swapped for the model's own around its
# train-mode passes; threads (a threaded Dask worker) take turns.
_GENERATOR_LOCK = threading.RLock()

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

# babysit's losses (babysit.engine.losses) in torch, for plain training steps: the mean
# softmax cross-entropy, and the multiclass SVM with margin 1, sum_{j != y} max(0,
# s_j - s_y + 1) (torch's multi_margin_loss divides that sum by the class count).
TORCH_LOSSES = {
    "softmax": lambda scores, y: F.cross_entropy(scores, y),
    "svm": lambda scores, y: F.multi_margin_loss(scores, y, margin=1.0) * scores.shape[1],
}


def generator_text(state: torch.Tensor) -> str:
    return json.dumps({"cpu": base64.b64encode(state.numpy().tobytes()).decode("ascii")})


def generator_state(text: str) -> torch.Tensor:
    raw = base64.b64decode(json.loads(text)["cpu"])
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()


class TorchModel:
    """A classifier made of a torch module and one of babysit's losses (see the module doc).

    Built by :func:`babysit.torch.builder.build_torch_model`, which traces the
    module once: ``calls`` is that traced sequence of layer calls.
    """

    def __init__(self, module, loss, reg, input_shape, num_classes, dtype, calls, *,
                 output_layer: bool, has_kinks: bool, draws: bool, generator: torch.Tensor,
                 output_shape: tuple | None = None):
        self.module = module
        self.loss_fn = loss
        self.reg = float(reg)
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        # per-example output shape: (C,) scores; a standalone layer's own (gradcheck --layer)
        self.output_shape = (self.num_classes,) if output_shape is None else tuple(output_shape)
        self.dtype = np.dtype(dtype)
        self.calls = calls
        visible = [(position, call) for position, call in enumerate(calls) if call.visible]
        self._positions = [position for position, _ in visible] + ([len(calls)] if output_layer else [])
        self.names = [call.name for _, call in visible] + ([OUTPUT] if output_layer else [])
        self._kinds = {call.name: call.kind for _, call in visible}
        self._kinds[OUTPUT] = OUTPUT_KIND
        self._owners = {call.name: call.owner for _, call in visible}
        self._output_layer = output_layer
        self._has_kinks = bool(has_kinks) or bool(getattr(loss, "has_kinks", False))
        self.draws = bool(draws)
        self._generator = generator
        self._last_draw = generator
        self._replaying = False
        self._recording = False
        self._train_mode = None
        self._scores = None      # the graph of the last train-mode forward
        self._input = None       # its input tensor
        self._last_X = None      # the last forward's input (forward_from reruns it)
        self._wants_input_grad = True
        self._kinks: list = []
        self.outputs, self.output_grads = {}, {}
        self.layer_inputs, self.layer_input_grads = {}, {}
        self.input_grad = None
        modules = dict(module.named_modules())
        self._tensors, self._param_owner = {}, {}
        self.params, self.weight_names = {}, []
        for name, tensor in module.named_parameters():
            if not tensor.requires_grad:
                continue   # frozen: not trained, not checked
            owner = name.rpartition(".")[0]
            self._tensors[name] = tensor
            self._param_owner[name] = owner or "model"
            self.params[name] = tensor.detach().numpy()
            if is_weight(tensor, modules[owner]):
                self.weight_names.append(name)
        self._data_grads: dict = {}

    # -- passes ----------------------------------------------------------------
    def _set_mode(self, train: bool) -> None:
        if self._train_mode is not train:
            self.module.train(train)
            self._train_mode = train

    @contextlib.contextmanager
    def _randomness(self):
        """Swap the model's generator in for a train-mode pass of a module that draws."""
        with _GENERATOR_LOCK:
            start = self._last_draw if self._replaying else self._generator
            saved = torch.get_rng_state()
            torch.set_rng_state(start)
            try:
                yield
            finally:
                if not self._replaying:
                    self._last_draw = start
                    self._generator = torch.get_rng_state()
                torch.set_rng_state(saved)

    def _pass(self, X, train: bool, *, grad: bool, tap: Tap | None) -> torch.Tensor:
        # a copy: from_numpy shares memory, and a module may write into its input (an
        # in-place ReLU first), which would change the caller's data (the validation set)
        x = torch.from_numpy(np.array(X, dtype=self.dtype, order="C", copy=True))
        if grad and self._wants_input_grad:
            x.requires_grad_(True)
        self._set_mode(train)
        randomness = self._randomness() if train and self.draws else contextlib.nullcontext()
        # the user's module failing is their input, not our bug
        with fenced("the torch module's forward raised"), randomness, torch.set_grad_enabled(grad):
            if tap is None:
                scores = self.module(x)
            else:
                with hooked(self.module, tap):
                    scores = self.module(x)
                    if self._output_layer:
                        args, _ = tap.enter(OUTPUT, OUTPUT, OUTPUT_KIND, None, (scores,))
                        scores = tap.leave(args[0])
        expected = (len(x),) + self.output_shape
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ModelError(f"the torch module returned {shape} for a batch of {len(x)}; it must "
                             f"return shape {expected}")
        self._input = x
        return scores

    def forward(self, X, train: bool = False) -> np.ndarray:
        """Class scores ``(N, C)``; test mode by default. A train-mode forward keeps its graph."""
        kinks = self._has_kinks and self._replaying   # gradient checks: see kink_state
        tap = Tap(self.calls, record=True, kinks=kinks) if self._recording else None
        scores = self._pass(X, train, grad=train, tap=tap)
        self._last_X = X
        if tap is not None:
            self.outputs, self.output_grads = tap.outputs, tap.output_grads
            self.layer_inputs, self.layer_input_grads = tap.inputs, tap.input_grads
            self._kinks = tap.kinks or []
        self._scores = scores if train else None
        return scores.detach().numpy()

    def forward_from(self, start: int, out: np.ndarray, train: bool) -> np.ndarray:
        """Scores with layer ``start``'s input replaced by ``out`` (0: the model's input).

        The whole module runs again on the last forward's input, so this is
        exact for any graph; the branch records of the pass become ``kink_state``.
        """
        substitute = None
        X = out
        if start > 0:
            if self._last_X is None:
                raise ModelError("forward_from needs a forward pass first (it reruns that pass's input)")
            X = self._last_X
            substitute = (self._positions[start],
                          torch.from_numpy(np.ascontiguousarray(out, dtype=self.dtype)))
        tap = Tap(self.calls, substitute=substitute, kinks=self._has_kinks)
        scores = self._pass(X, train, grad=False, tap=tap)
        self._scores = None
        self._kinks = tap.kinks or []
        return scores.numpy()

    def backward(self, dscores: np.ndarray, input_grad: bool = True) -> dict[str, np.ndarray]:
        """Backpropagate ``dscores`` from the last train-mode forward: data-loss gradients."""
        scores, self._scores = self._scores, None
        if scores is None:
            raise ModelError("backward needs a train-mode forward first")
        return self._backprop(lambda: scores.backward(
            torch.from_numpy(np.ascontiguousarray(dscores, dtype=self.dtype))), input_grad)

    def _backprop(self, run, input_grad: bool) -> dict[str, np.ndarray]:
        """``run()`` backpropagates into fresh ``.grad`` tensors; returns them as NumPy views."""
        for tensor in self._tensors.values():
            tensor.grad = None
        with fenced("the torch module's backward raised"):   # a custom Function's backward is user code
            run()
        grads = {}
        for name, tensor in self._tensors.items():
            if tensor.grad is None:   # not reached by this pass: a zero gradient
                tensor.grad = torch.zeros_like(tensor)
            grads[name] = tensor.grad.numpy()
        self._data_grads = grads
        x = self._input
        self.input_grad = to_numpy(x.grad) if input_grad and x is not None and x.grad is not None \
            else None
        return grads

    def loss(self, X, y, reg: float | None = None, input_grad: bool = True):
        """Train-mode loss and gradients ``(loss, grads)``, the L2 term included (see Model.loss).

        What diagnostics look at (passes that record or replay) is the engine's
        own loss on the NumPy scores, as for NumPy models. A plain training step
        computes the same formula in torch (:data:`TORCH_LOSSES`) and
        backpropagates from it: no NumPy round trip for the scores (a tenth of a
        millisecond a step, which is what a small net's step costs in all).
        """
        self._wants_input_grad = input_grad
        try:
            torch_loss = TORCH_LOSSES.get(getattr(self.loss_fn, "kind", None))
            if self._recording or self._replaying or torch_loss is None:
                return Model.loss(self, X, y, reg, input_grad)
            scores = self._pass(X, True, grad=True, tap=None)
            self._scores = None
            try:
                data_loss = torch_loss(scores, torch.from_numpy(np.asarray(y, dtype=np.int64)))
            except (IndexError, RuntimeError, ValueError) as exc:
                raise ModelError(f"the {self.loss_fn.kind} loss failed on these scores and labels: "
                                 f"{exc}") from None
            grads = dict(self._backprop(data_loss.backward, input_grad))
        finally:
            self._wants_input_grad = True
        return self.with_reg(data_loss.item(), grads, reg)

    reg_loss = Model.reg_loss
    with_reg = Model.with_reg
    copy_params = Model.copy_params
    set_params = Model.set_params
    predict = Model.predict
    accuracy = Model.accuracy
    num_params = Model.num_params

    def data_grads(self) -> dict[str, np.ndarray]:
        """The data-loss gradients of the last backward (the optimizer's L2 share excluded)."""
        return dict(self._data_grads)

    # -- recording, randomness, kinks --------------------------------------------
    @contextlib.contextmanager
    def recording(self):
        """Inside the block, passes are hooked and record (cleared on entry and exit)."""
        self.outputs, self.output_grads = {}, {}
        self.layer_inputs, self.layer_input_grads = {}, {}
        previous, self._recording = self._recording, True
        try:
            yield self
        finally:
            self._recording = previous
            self.outputs, self.output_grads = {}, {}
            self.layer_inputs, self.layer_input_grads = {}, {}

    @contextlib.contextmanager
    def replay_randomness(self):
        """Inside the block, train-mode passes redraw the last free pass's random numbers."""
        previous, self._replaying = self._replaying, True
        try:
            yield
        finally:
            self._replaying = previous

    def random_state(self) -> dict[str, str]:
        """``{"torch": text}``: the model's generator (empty when the module never draws)."""
        return {"torch": generator_text(self._generator)} if self.draws else {}

    def set_random_state(self, states: Mapping) -> None:
        if self.draws and "torch" in states:
            try:
                self._generator = self._last_draw = generator_state(states["torch"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelError(f"the torch generator state does not parse: {exc}") from None

    @property
    def has_kinks(self) -> bool:
        return self._has_kinks

    def kink_state(self) -> list:
        """Branch records of the last pass that took them, then the loss's (kinds.KINK_RULES).

        ``forward_from`` passes take them, and recorded passes inside
        ``replay_randomness()`` (what gradient checks compare); other passes
        do not pay for them.
        """
        return list(self._kinks) + [self.loss_fn.kink_state()]

    # -- names ---------------------------------------------------------------------
    def kind_of(self, layer_name: str) -> str:
        return self._kinds.get(layer_name, layer_name)

    def layer_of(self, param_name: str) -> str | None:
        """The first layer call of the module that owns ``param_name`` (None: a non-leaf owner)."""
        owner = self._param_owner.get(param_name)
        return next((name for name in self.names if self._owners.get(name) == owner), None)

    def units_axis(self, param_name: str) -> int:
        """Torch keeps a layer's units first: ``Linear.weight (out, in)``, ``Conv2d.weight (out, in, kh, kw)``."""
        return 0

    def params_of(self, layer_name: str) -> dict[str, np.ndarray]:
        """``{key: array}`` of the parameters of the module behind a layer (``weight``, ``bias``)."""
        owner = self._owners.get(layer_name)
        if owner is None:
            return {}
        prefix = "" if owner == "model" else owner + "."
        return {name[len(prefix):]: value for name, value in self.params.items()
                if self._param_owner[name] == owner}

    # -- state -----------------------------------------------------------------------
    def buffers(self) -> dict[str, np.ndarray]:
        """Copies of the module's buffers by path (batchnorm running statistics ...)."""
        return {name: to_numpy(buffer) for name, buffer in self.module.named_buffers()}

    def load_buffers(self, buffers: Mapping) -> None:
        own = dict(self.module.named_buffers())
        for name, value in buffers.items():
            target = own.get(name)
            if target is None or tuple(target.shape) != np.shape(value):
                raise ModelError(f"module buffer {name!r} does not fit this model")
            with torch.no_grad():
                target.copy_(torch.as_tensor(np.asarray(value)).to(target.dtype))

    def make_optimizer(self, section):
        """The recipe's update rule: torch.optim over this module, or babysit's own
        L-BFGS over the NumPy views (babysit.torch.optim.make_torch_optimizer)."""
        from babysit.torch.optim import make_torch_optimizer

        return make_torch_optimizer(section, self._tensors, self.params)

    def __repr__(self) -> str:
        return (f"TorchModel({type(self.module).__name__}: {', '.join(self.names)}; "
                f"loss={getattr(self.loss_fn, 'kind', self.loss_fn)})")


__all__ = ["TorchModel", "OUTPUT", "TORCH_DTYPES"]
