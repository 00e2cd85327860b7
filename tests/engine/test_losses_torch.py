"""Losses and update rules compared value by value with PyTorch (optional)."""

import numpy as np
import pytest

from babysit.engine.losses import SoftmaxLoss, SVMLoss
from babysit.engine.optim import make_optimizer

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")


def scores_and_labels(n=16, c=10, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n, c)), rng.integers(0, c, size=n)


def torch_loss_and_grad(fn, scores, y):
    s = torch.tensor(scores, requires_grad=True)
    loss = fn(s, torch.tensor(y))
    loss.backward()
    return loss.item(), s.grad.numpy()


@pytest.mark.parametrize("n", [1, 16])
def test_softmax_matches_cross_entropy(n):
    scores, y = scores_and_labels(n)
    ours, dours = SoftmaxLoss()(scores, y)
    theirs, dtheirs = torch_loss_and_grad(torch.nn.functional.cross_entropy, scores, y)
    assert ours == pytest.approx(theirs, rel=1e-12)
    np.testing.assert_allclose(dours, dtheirs, rtol=1e-10, atol=1e-15)


def test_softmax_matches_cross_entropy_in_float32_with_huge_scores():
    scores, y = scores_and_labels(8, 5, scale=1e4)
    scores = scores.astype(np.float32)
    ours, dours = SoftmaxLoss()(scores, y)
    theirs, dtheirs = torch_loss_and_grad(torch.nn.functional.cross_entropy, scores, y)
    assert ours == pytest.approx(theirs, rel=1e-5)
    np.testing.assert_allclose(dours, dtheirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [1, 16])
def test_svm_matches_multi_margin_loss(n):
    scores, y = scores_and_labels(n, scale=0.5)
    c = scores.shape[1]
    ours, dours = SVMLoss()(scores, y)
    # torch divides each example's hinge sum by the number of classes as well
    theirs, dtheirs = torch_loss_and_grad(
        lambda s, t: torch.nn.functional.multi_margin_loss(s, t, margin=1.0) * c, scores, y)
    assert ours == pytest.approx(theirs, rel=1e-12)
    np.testing.assert_allclose(dours, dtheirs, rtol=1e-10, atol=1e-15)


# With a constant learning rate torch's forms are the lecture's rules rewritten:
# torch's momentum buffer b relates to the lecture's velocity as v = -lr * b, and
# torch's Nesterov step p -= lr * (g + mu * b) equals x += -mu v_prev + (1 + mu) v.
# Adam, RMSprop and Adagrad add eps outside the square root, like the lecture.
TORCH = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05, eps=1e-8),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.05, alpha=0.99, eps=1e-8),
    "adam": lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.999), eps=1e-8),
}


@pytest.mark.parametrize("update", sorted(TORCH))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_update_rules_match_torch(update, dtype):
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((6, 4)).astype(dtype)
    grads = [rng.standard_normal((6, 4)).astype(dtype) for _ in range(5)]
    ours = {"W": W0.copy()}
    opt = make_optimizer({"update": update, "lr": 0.05}, ours)
    theirs = torch.tensor(W0.copy(), requires_grad=True)
    topt = TORCH[update]([theirs])
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-6)
    for g in grads:
        opt.step({"W": g}, 0.05)
        theirs.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(ours["W"], theirs.detach().numpy(), **tol)
