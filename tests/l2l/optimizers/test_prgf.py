"""P-RGF: the lambda formula, exact per-step costs, surrogate refusals and a perfect prior's alpha."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.optimizers.core.surrogates import SurrogateEnsemble
from l2l.optimizers.prgf import PRGF, best_lambda
from l2l.oracle import Oracle

#: MNIST's dimension and the default q: d + 2q - 2 = 882, so lambda = 0 below alpha = 1 / sqrt(882) = 0.0337
D, Q = 784, 50


@pytest.fixture(scope="module")
def linf_task():
    return l2l.make_family("mnist_attack_linf", eps=0.3, sizes=(3, 2, 2)).instance("val", 0)


def test_best_lambda_matches_hand_worked_values():
    # alpha = 0.02: a^2 (d + 2q - 2) = 0.3528 < 1, and the formula's value (negative) is not in (0, 1)
    assert best_lambda(0.02, D, Q) == 0.0
    # alpha = 0.1: a^2 = 0.01, a^4 = 1e-4; numerator 0.99 * (1 - 8.82) = -7.7418, denominator
    # 1e-4 * 784 * 882 - 2 * 0.01 * 784 * 50 + 1 = 69.1488 - 784 + 1 = -713.8512: interior
    assert best_lambda(0.1, D, Q) == pytest.approx(7.7418 / 713.8512, rel=1e-9)
    # alpha = 0.5: numerator 0.75 * (1 - 220.5) < 0 < denominator 43218 - 19600 + 1; a^2 (d + 2q - 2) >= 1
    assert best_lambda(0.5, D, Q) == 1.0
    for alpha in (1.0, 1.3, -1.0):  # |alpha| >= 1: the prior alone
        assert best_lambda(alpha, D, Q) == 1.0


@pytest.mark.parametrize(
    ("option", "value"),
    [("q", 0), ("norm_every", 1.5), ("norm_samples", 0), ("sigma", 0.0), ("step_fraction", -0.1),
     ("surrogates", "mlp,mlp")],
)  # fmt: skip
def test_bad_settings_are_refused_by_name(option, value):
    with pytest.raises(ValueError, match=option if option != "surrogates" else "empty or repeated"):
        PRGF(**{option: value})


def test_every_step_spends_what_it_announced(linf_task):
    opt = PRGF(q=5)
    announced, spent = [], []

    def observe(state, oracle, traj):
        if traj.steps:
            spent.append(traj.queries[-1] - traj.queries[-2])
        announced.append(opt.next_step_queries(state, linf_task.dim))

    # 11 iterations (22 steps): the norm estimates of iterations 0, 3 and 10 all happen
    traj = l2l.run(opt, linf_task, steps=22, seed=0, callback=observe)
    assert traj.steps == 22 and announced[:-1] == spent
    probes, moves = spent[0::2], spent[1::2]
    # probe steps: f(x0) on the first, 10 norm directions at iterations 0, 3 and 10, the prior probe
    assert probes == [1 + 10 + 1, 1, 1, 10 + 1, 1, 1, 1, 1, 1, 1, 10 + 1]
    assert all(m in (5 + 1, 1) for m in moves)  # q directions (or none at lambda = 1) and f(x_new)


def test_a_held_out_surrogate_is_refused_by_name():
    with pytest.raises(ValueError, match="'resnet', a held-out target"):
        l2l.make_optimizer("prgf", surrogates="mlp,resnet")


def test_the_attacked_surrogate_is_left_out_of_the_prior(linf_task):
    assert linf_task.model_name == "cw"  # the default target is a surrogate
    opt = PRGF(q=3, surrogates="cw,mlp")
    state = opt.step(opt.init(linf_task.x0()), Oracle(linf_task))
    assert state.slots["ensemble"].names == ("mlp",)
    lone = PRGF(surrogates="cw")
    oracle = Oracle(linf_task)
    with pytest.raises(ValueError, match="leaves no model once the attacked 'cw' is out"):
        lone.step(lone.init(linf_task.x0()), oracle)
    assert oracle.queries == 0  # refused before any query


def test_a_task_without_a_zoo_is_refused():
    quadratic = l2l.make_task("quadratic", split="val", index=0)
    with pytest.raises(ValueError, match="zoo"):
        l2l.run(PRGF(), quadratic, steps=2)
    opt = PRGF()  # stepped directly, past l2l.run's capability check
    with pytest.raises(ValueError, match="target-model zoo"):
        opt.step(opt.init(quadratic.x0()), Oracle(quadratic))


def test_the_linf_step_moves_every_coordinate_by_its_fraction_of_eps(linf_task):
    opt = PRGF(q=5, step_fraction=0.1)
    state = opt.init(linf_task.x0())
    oracle = Oracle(linf_task)
    for _ in range(2):  # one probe step, one move step
        state = opt.step(state, oracle)
    moved = state.x[state.x != 0].abs()
    # from 0, each coordinate moves 0.03 (or less where the image box stops it: pixels at 0 or 1)
    assert moved.numel() > 0 and moved.max() == pytest.approx(0.03) and bool((moved <= 0.03 + 1e-7).all())


def test_a_perfect_prior_is_estimated_near_cosine_one_and_taken_alone(linf_task, monkeypatch):
    """With the true gradient as the prior, alpha estimates 1 and lambda = 1 (the move costs 1 query).

    Tolerance: the norm estimate averages 200 squared directional slopes (RMS-1 Gaussian directions),
    each ||grad||^2 times a chi-square(1) variable, so its relative standard deviation is sqrt(2 / 200) =
    0.1 and alpha's (the inverse square root) about 0.05; |alpha - 1| < 0.2 is 4 of them, with room for
    the finite differences' curvature error at sigma = 1e-4.
    """
    task = linf_task

    def true_gradient(self, image, delta, label):
        x = delta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(task.loss(x.unsqueeze(0)).sum(), x)
        return grad

    monkeypatch.setattr(SurrogateEnsemble, "gradient", true_gradient)
    # a start 0.09 or more inside the image box on every pixel, so the clamp to [0, 1] cuts no finite
    # difference, jittered so that no two pixels are equal: MNIST's flat background makes exact ties in the
    # model's max-pooling and ReLUs, where f has a kink and its one-sided slope along the autograd gradient
    # falls short of ||grad||^2 (alpha about 0.8 without the jitter)
    jitter = torch.rand(task.dim, generator=torch.Generator().manual_seed(1))
    x0 = 0.1 * torch.sign(0.5 - task.image.flatten()) + 0.02 * jitter - 0.01
    oracle = Oracle(task)
    f0 = oracle(x0)[0]
    assert f0 > 0  # still correctly classified: the margin is not clipped, its gradient is the true one
    alphas = []
    for seed in range(3):
        opt = PRGF(norm_samples=200)
        state = opt.init(x0, seed=seed)
        before = oracle.queries
        state = opt.step(state, oracle)  # the probe step
        assert oracle.queries - before == 1 + 200 + 1
        alphas.append(state.slots["alpha"])
        assert state.slots["lam"] == 1.0
        before = oracle.queries
        state = opt.step(state, oracle)  # the move step: the prior alone, then f(x_1)
        assert oracle.queries - before == 1 and state.slots["fx"] < f0
    assert all(abs(a - 1) < 0.2 for a in alphas), alphas
