"""The binary search over c: the bracketing rule, query accounting, and the kept perturbation."""

from __future__ import annotations

import math

import pytest
import torch

import l2l
from l2l.c_search import binary_search_c, l1_distortion, next_c


def test_next_c_grows_until_failure_then_bisects():
    c, low, high = next_c(0.1, 0.0, math.inf, success=True)
    assert (c, low, high) == (pytest.approx(1.0), 0.1, math.inf)
    c, low, high = next_c(c, low, high, success=False)
    assert (c, low, high) == (pytest.approx(0.55), 0.1, 1.0)
    c, low, high = next_c(0.1, 0.0, math.inf, success=False)
    assert (c, low, high) == (pytest.approx(0.01), 0.0, 0.1)


@pytest.mark.slow
def test_search_keeps_the_least_distorted_success_and_counts_every_query(mnist_family):
    task = mnist_family.instance("val", 0)
    opt = l2l.make_optimizer("zo_adam", task="mnist_attack")
    result = binary_search_c(opt, task, rounds=3, steps=120, budget_per_round=1500, c0=0.05)
    assert result.rounds[0][0] == 0.05 and len(result.rounds) == 3
    assert result.queries <= 3 * 1500 and result.queries % 21 == 0
    successes = [r for r in result.rounds if r[1]]
    assert successes, result.rounds  # measured: zo_adam fools this image at c = 0.05 within 1,500 queries
    assert result.best_l1 == pytest.approx(min(r[2] for r in successes))
    assert bool(task.success(result.best_x.unsqueeze(0))[0])
    assert l1_distortion(task, result.best_x) == pytest.approx(result.best_l1)
    assert task.c == 0.1  # the caller's task is untouched


def test_bad_arguments():
    task = l2l.tasks.AttackTask(torch.nn.Flatten(), torch.rand(1, 2, 2), label=0)
    with pytest.raises(ValueError, match="rounds=0"):
        binary_search_c(l2l.make_optimizer("zo_sgd"), task, rounds=0, steps=1)
    with pytest.raises(ValueError, match=r"c0=0\.0"):
        binary_search_c(l2l.make_optimizer("zo_sgd"), task, rounds=1, steps=1, c0=0.0)
