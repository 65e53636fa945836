"""Estimator accuracy on a quadratic with a known gradient, query costs, and argument checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from l2l.estimators import (
    EstimatorSpec,
    coordinate_difference,
    forward_difference,
    fresh_part,
    gaussian_directions,
    update_trend,
)
from l2l.oracle import Oracle
from l2l.tasks.quadratic import QuadraticFamily


def mean_cosine(kind: str, q: int, trials: int = 200) -> float:
    """Mean cosine similarity between the estimate and the true gradient over fixed seeds."""
    task = QuadraticFamily(dim=20).instance("test", 0)
    x = torch.linspace(-1, 1, 20)
    true = task.gradient(x)
    spec = EstimatorSpec(kind=kind, q=q, mu=1e-3)
    g = torch.Generator().manual_seed(123)
    cos = [torch.cosine_similarity(spec.estimate(task.loss, x, g).grad, true, dim=0) for _ in range(trials)]
    return float(torch.stack(cos).mean())


@pytest.mark.parametrize("kind", ["gaussian", "sphere", "antithetic"])
def test_cosine_similarity_grows_with_q(kind):
    # For a Gaussian estimator in d = 20 the expected cosine is about sqrt(q / (q + d)):
    # ~0.22 at q = 1, ~0.45 at q = 5, ~0.71 at q = 20, ~0.91 at q = 100.
    c1, c5, c20, c100 = (mean_cosine(kind, q) for q in (1, 5, 20, 100))
    assert c1 < c5 < c20 < c100
    assert 0.1 < c1 < 0.35
    assert 0.6 < c20 < 0.8
    assert c100 > 0.85


def test_coordinate_estimate_matches_the_true_gradient():
    task = QuadraticFamily(dim=8).instance("val", 1)
    x = torch.randn(8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    est = coordinate_difference(task.loss, x, mu=1e-5)
    assert torch.allclose(est.grad, task.gradient(x).double(), atol=1e-8)
    assert est.queries == 16


def test_forward_difference_spends_q_plus_one_queries_with_one_base_point():
    task = QuadraticFamily(dim=5).instance("test", 0)
    oracle = Oracle(task)
    est = forward_difference(oracle, torch.zeros(5), torch.eye(5)[:3], mu=1e-3)
    assert oracle.queries == 4 == est.queries and oracle.calls == 1
    assert torch.isclose(est.fx, task.loss(torch.zeros(1, 5))[0])


def test_diagonal_covariance_scales_directions():
    std = torch.tensor([0.0, 1.0, 3.0])
    u = gaussian_directions(2000, 3, torch.Generator().manual_seed(0), std=std)
    assert torch.all(u[:, 0] == 0)
    assert u[:, 2].std() / u[:, 1].std() == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError, match=r"expected \[3\]"):
        gaussian_directions(2, 3, torch.Generator(), std=torch.ones(4))


def test_query_costs():
    assert EstimatorSpec("gaussian", q=20).queries_per_step(784) == 21
    assert EstimatorSpec("sphere", q=20).queries_per_step(784) == 21
    assert EstimatorSpec("antithetic", q=20).queries_per_step(784) == 40
    assert EstimatorSpec("coordinate", q=20).queries_per_step(784) == 1568


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"q": 0}, "q=0 must be an integer >= 1"), ({"mu": 0.0}, "mu=0.0 must be > 0"),
     ({"mu": -1e-3}, "mu=-0.001"), ({"kind": "laplace"}, "unknown estimator kind 'laplace'")],
)  # fmt: skip
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EstimatorSpec(**kwargs)


def test_the_fresh_part_of_a_guided_estimate_is_unbiased_whatever_the_mean():
    # f(x) = g . x has slopes u_i . g / q exactly, so both means are checkable: the estimate over
    # u_i = a + z_i averages to (I + a a^T) g, its fresh part to g (zo_trend and envs.mdp's trend)
    g, a = torch.tensor([1.0, -2.0, 0.5, 0.0]), torch.tensor([0.9, 0.9, -0.9, 0.9])
    rng, runs, q = torch.Generator().manual_seed(0), 4000, 5
    fresh, full = torch.zeros(4), torch.zeros(4)
    for _ in range(runs):
        est = forward_difference(lambda X: X @ g, torch.zeros(4), a + gaussian_directions(q, 4, rng), mu=1e-3)
        fresh += fresh_part(est, a) / runs
        full += est.grad / runs
    # one fresh part has std <= 1.5 per entry here, so the mean of 4,000 has std 0.024: 0.2 is 8 sigma
    assert torch.allclose(fresh, g, atol=0.2)
    assert torch.allclose(full, g + a * (a @ g), atol=0.2) and not torch.allclose(full, g, atol=1.0)
    one = forward_difference(lambda X: X @ g, torch.zeros(4), a + gaussian_directions(1, 4, rng), mu=1e-3)
    assert torch.allclose(fresh_part(one, a), one.slopes @ (one.directions - a))  # q = 1: no baseline
    with pytest.raises(ValueError, match="carries no slopes"):
        fresh_part(dataclasses.replace(one, slopes=None), a)


def test_the_trend_is_a_running_mean_of_fresh_parts_from_zeros():
    rng, a = torch.Generator().manual_seed(1), torch.tensor([0.5, -0.5, 0.0])
    f = lambda X: X.pow(2).sum(1)  # noqa: E731
    ests = [forward_difference(f, torch.ones(3), a + gaussian_directions(3, 3, rng), 1e-3) for _ in range(2)]
    first = update_trend(None, ests[0], a, 0.9)
    assert torch.allclose(first, 0.1 * fresh_part(ests[0], a))
    assert torch.allclose(update_trend(first, ests[1], a, 0.9), 0.9 * first + 0.1 * fresh_part(ests[1], a))
