"""A recipe's ``optim`` section as ``torch.optim``, behind the engine's optimizer interface.

``TorchOptimizer(section, tensors, params)`` is what ``Solver`` gets from
``TorchModel.make_optimizer``: ``step(grads, lr)``, ``state_dict()`` /
``load_state_dict()`` in the engine's layout (``"t"``, ``"<param>/<slot>"``,
with torch's slot names and buffers kept as they are, for exact resumes), so
checkpoints, resume and the one training loop do not care which backend trains. The section is validated by the engine's
``make_optimizer`` (same keys, same bounds, same messages).

The mapping, and where torch's formulas stand against the engine's (the
CS231n lecture's, :mod:`babysit.engine.optim`):

==========  ==========================================  ===========================================
update      torch.optim                                  formula
==========  ==========================================  ===========================================
sgd         SGD(momentum=0)                              identical
momentum    SGD(momentum=mu, dampening=0)                torch keeps ``buf = mu*buf + dx`` and steps
                                                         ``x -= lr*buf``; the engine keeps
                                                         ``v = mu*v - lr*dx``. Identical while lr is
                                                         constant (``v = -lr*buf``); when lr changes
                                                         (decay) the buffers are rescaled by
                                                         ``lr_old/lr_new`` so that they stay
                                                         identical
nesterov    SGD(momentum=mu, nesterov=True)              torch's Nesterov is the lecture's rewritten
                                                         form on the look-ahead parameters:
                                                         ``x -= lr*((1+mu)*dx + mu**2*buf)`` equals
                                                         ``x += mu**2*v - (1+mu)*lr*dx``; rescaled as
                                                         momentum
adagrad     Adagrad(lr_decay=0, initial_accumulator=0)  identical, eps outside the root
rmsprop     RMSprop(alpha=decay_rate, momentum=0)        identical, eps outside the root
adam        Adam(betas=(beta1, beta2))                   identical: both bias-correct m and v and add
                                                         eps to ``sqrt(v)/sqrt(1-beta2**t)``
lbfgs       not torch.optim.LBFGS: babysit's own         torch's LBFGS is another algorithm (inner
            (engine/lbfgs.py) over the NumPy views       iterations per step, its own tolerances,
                                                         no line search by default); babysit's is
                                                         checked against scipy, so lbfgs means the
                                                         same on both backends
==========  ==========================================  ===========================================

"Identical" is up to rounding (the same formula, operations in another order):
the twin test (tests/torch/test_twin.py) states the tolerances.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from babysit.engine.optim import make_optimizer
from babysit.errors import ModelError

# update -> (torch.optim class, its options from the engine's hyperparameters,
#            {engine slot: torch state key} (the same buffer; checkpoints use torch's name))
TORCH_RULES = {
    "sgd": (torch.optim.SGD, lambda h: {"momentum": 0.0}, {}),
    "momentum": (torch.optim.SGD, lambda h: {"momentum": h["momentum"], "dampening": 0.0},
                 {"v": "momentum_buffer"}),
    "nesterov": (torch.optim.SGD, lambda h: {"momentum": h["momentum"], "dampening": 0.0,
                                             "nesterov": True}, {"v": "momentum_buffer"}),
    "adagrad": (torch.optim.Adagrad, lambda h: {"eps": h["eps"], "lr_decay": 0.0,
                                                "initial_accumulator_value": 0.0}, {"cache": "sum"}),
    "rmsprop": (torch.optim.RMSprop, lambda h: {"alpha": h["decay_rate"], "eps": h["eps"],
                                                "momentum": 0.0, "centered": False},
                {"cache": "square_avg"}),
    "adam": (torch.optim.Adam, lambda h: {"betas": (h["beta1"], h["beta2"]), "eps": h["eps"]},
             {"m": "exp_avg", "v": "exp_avg_sq"}),
}
VELOCITY_RULES = ("momentum", "nesterov")   # torch's buffer is in gradient units: rescaled


def make_torch_optimizer(section, tensors: Mapping, params: Mapping):
    """The optimizer a torch model trains with: :class:`TorchOptimizer` for the rules of
    ``TORCH_RULES``, babysit's own optimizer over the NumPy views for the others (lbfgs)."""
    name = make_optimizer(section, {}).name   # the engine's validation of the section
    if name in TORCH_RULES:
        return TorchOptimizer(section, tensors, params)
    return make_optimizer(section, params)


class TorchOptimizer:
    """torch.optim over named tensors, with the engine's ``step``/``state_dict`` interface.

    ``tensors`` maps parameter names to the module's parameters, ``params`` to
    their NumPy views (what the engine's optimizers hold). Like the engine's
    first-order rules it needs no closure, takes any batch size and never
    converges.
    """

    needs_closure = False
    full_batch = False
    converged = False

    def __init__(self, section, tensors: Mapping, params: Mapping):
        engine = make_optimizer(section, {})   # the engine's validation of the section
        self.name = engine.name
        if self.name not in TORCH_RULES:
            raise ModelError(f"update {self.name!r} has no torch.optim mapping; torch models "
                             f"train with: {', '.join(TORCH_RULES)}")
        cls, options, self.slots = TORCH_RULES[self.name]
        self.hyper = {key: getattr(engine, key) for key in engine.hyper}
        self.params = params
        self.tensors = dict(tensors)
        self.index = {name: i for i, name in enumerate(self.tensors)}
        # lr is set before every step; 1.0 only fills the required argument
        self.torch = cls(list(self.tensors.values()), lr=1.0, **options(self.hyper))
        self.lr = None   # the lr of the last step (velocity buffers are in its units)
        self.t = 0

    def step(self, grads: Mapping, lr: float) -> None:
        """One update with learning rate ``lr``; ``grads`` (NumPy, same keys as params) become
        the tensors' ``.grad`` without a copy."""
        if len(grads) != len(self.tensors) or any(name not in grads for name in self.tensors):
            missing = sorted(set(self.tensors) - set(grads))
            extra = sorted(set(grads) - set(self.tensors))
            raise ModelError(f"gradients do not match the parameters (missing {missing}, extra {extra})")
        lr = float(lr)
        for name, tensor in self.tensors.items():
            tensor.grad = torch.from_numpy(np.ascontiguousarray(grads[name], dtype=self.params[name].dtype))
        if self.name in VELOCITY_RULES and self.lr is not None and lr != self.lr:
            self._scale_velocity(self.lr / lr)
        for group in self.torch.param_groups:
            group["lr"] = lr
        self.torch.step()
        self.lr = lr
        self.t += 1

    def _scale_velocity(self, factor: float) -> None:
        with torch.no_grad():
            for tensor in self.tensors.values():
                buffer = self.torch.state.get(tensor, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.mul_(factor)

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"t": steps, "lr": last lr (0: none yet), "<param>/<torch slot>": array}``.

        The slots are torch's own buffers, unconverted (``momentum_buffer``,
        ``exp_avg``, ...): converting the velocity to the engine's ``v = -lr*buf``
        and back would round, and a resume must give the same bits.
        """
        state = {"t": int(self.t), "lr": float(self.lr or 0.0)}
        for name, tensor in self.tensors.items():
            own = self.torch.state.get(tensor, {})
            for key in self.slots.values():
                value = own.get(key)
                state[f"{name}/{key}"] = (np.zeros(tuple(tensor.shape), self.params[name].dtype)
                                          if value is None else value.detach().numpy().copy())
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a :meth:`state_dict` (same parameters, same rule) exactly."""
        expected = {f"{name}/{key}" for name in self.tensors for key in self.slots.values()}
        if not {"t", "lr"} <= set(state) or set(state) - {"t", "lr"} != expected:
            raise ModelError(f"optimizer state does not fit a torch {self.name} optimizer of these "
                             f"parameters: expected keys {sorted(expected | {'t', 'lr'})}, "
                             f"got {sorted(state)}")
        t = int(state["t"])
        torch_state = self.torch.state_dict()
        for name, tensor in self.tensors.items():
            entry = {}
            for key in self.slots.values():
                value = np.asarray(state[f"{name}/{key}"])
                if value.shape != tuple(tensor.shape):
                    raise ModelError(f"optimizer state {name}/{key} has shape {value.shape}, "
                                     f"expected {tuple(tensor.shape)}")
                entry[key] = torch.from_numpy(value.astype(self.params[name].dtype, copy=True))
            if self.name not in ("sgd",) + VELOCITY_RULES:
                entry["step"] = torch.tensor(float(t))
            if entry:
                torch_state["state"][self.index[name]] = entry
        self.torch.load_state_dict(torch_state)
        self.t = t
        self.lr = float(state["lr"]) or None

    def __repr__(self) -> str:
        hyper = ", ".join(f"{key}={value:g}" for key, value in self.hyper.items())
        return f"TorchOptimizer({self.name}: {type(self.torch).__name__}({hyper}))"


__all__ = ["TorchOptimizer", "TORCH_RULES", "make_torch_optimizer"]
