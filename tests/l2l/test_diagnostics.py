"""l2l.run's callback (an observer that cannot change the run) and l2l.diagnostics built on it."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.diagnostics import cosine_trace, tapped_estimates, true_gradient


def test_callback_sees_x0_and_every_step_without_changing_the_trajectory():
    task = l2l.make_task("binary_classification", split="test", index=0)  # stochastic: minibatches
    optimizer = l2l.make_optimizer("zo_adam", task="binary_classification", q=4)
    seen = []

    def observe(state, oracle, traj):
        seen.append((traj.steps, state.step, oracle.queries, oracle.batch, traj.losses[-1]))
        true_gradient(oracle.task, state.x, oracle.batch)  # a white-box probe is not a query

    plain = l2l.run(optimizer, task, steps=6, budget=27, seed=3)
    observed = l2l.run(optimizer, task, steps=6, budget=27, seed=3, callback=observe)
    assert observed.losses == plain.losses and observed.queries == plain.queries
    assert torch.equal(observed.x, plain.x)
    # budget 27 at 5 queries a step allows 5 steps: one call at x0, then one per step
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4, 5] == [s[1] for s in seen]
    assert [s[2] for s in seen] == plain.queries and [s[4] for s in seen] == plain.losses
    assert seen[0][3] is None and all(s[3] is not None for s in seen[1:])  # the step's minibatch


def test_a_callback_that_queries_the_oracle_is_refused(quadratic_task):
    optimizer = l2l.make_optimizer("zo_sgd", q=2)

    def cheat(state, oracle, traj):
        oracle(state.x)

    with pytest.raises(RuntimeError, match=r"callback queried the oracle \(1 queries\) after step 0"):
        l2l.run(optimizer, quadratic_task, steps=3, callback=cheat)


def test_cosine_trace_of_an_exact_estimate_is_one_and_counts_the_run_queries(quadratic_task):
    exact = l2l.make_optimizer("zo_sgd", estimator="coordinate", mu=1e-4, q=1)  # central differences
    queries, cosines = cosine_trace(exact, quadratic_task, steps=5, seed=0)
    traj = l2l.run(exact, quadratic_task, steps=5, seed=0)
    assert queries == traj.queries[1:] and len(cosines) == 5
    assert min(cosines) > 0.999
    one_direction = l2l.make_optimizer("zo_sgd", q=1, mu=1e-4)
    _, random_cosines = cosine_trace(one_direction, quadratic_task, steps=30, seed=0, budget=40)
    assert len(random_cosines) == 20  # 2 queries a step within 40
    # a single Gaussian direction in d = 10 has |cos| ~ 1/sqrt(10) on average
    assert sum(abs(c) for c in random_cosines) / 20 < 0.6
    assert "estimate" not in vars(exact)  # the tap is removed


def test_tapped_estimates_refuses_an_optimizer_without_estimates():
    with pytest.raises(TypeError, match="exposes no estimate"), tapped_estimates(object()):
        pass
