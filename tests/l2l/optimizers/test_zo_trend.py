"""ZO-Trend: guided directions around the trend of its own unbiased estimates (l2l.optimizers.zo_trend)."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l import estimators
from l2l.estimators import update_trend
from l2l.optimizers.core import tuned as registry
from l2l.oracle import Oracle

SETTINGS = {"q": 4, "mu": 1e-3, "delta": 2.0}


def test_each_step_shifts_its_directions_by_the_trend_so_far(quadratic_task, monkeypatch):
    seen = []
    real = estimators.forward_difference

    def recorded(f, x, u, mu):
        seen.append((u, real(f, x, u, mu)))
        return seen[-1][1]

    monkeypatch.setattr(estimators, "forward_difference", recorded)
    opt = l2l.make_optimizer("zo_trend", strength=0.5, decay=0.9, **SETTINGS)
    state, oracle = opt.init(quadratic_task.x0()), Oracle(quadratic_task)
    trend = None
    for _ in range(4):
        mean = torch.zeros(quadratic_task.dim) if trend is None else 0.5 * trend / trend.abs().max()
        before = oracle.queries
        state = opt.step(state, oracle)
        directions, est = seen[-1]
        assert oracle.queries - before == opt.queries_per_step(quadratic_task.dim) == 5  # q + 1
        trend = update_trend(trend, est, mean, 0.9)  # the mean the step used is s * trend / max|trend|
        assert torch.allclose(state.slots["trend"], trend)
    shift = (directions - directions.mean(0)).abs().max()
    assert float(mean.abs().max()) == pytest.approx(0.5) and shift > 0  # shifted, and still random


def test_zero_strength_is_zo_sgd_draw_for_draw(quadratic_task):
    trend = l2l.run(
        l2l.make_optimizer("zo_trend", strength=0.0, **SETTINGS), quadratic_task, steps=10, seed=3
    )
    sgd = l2l.run(l2l.make_optimizer("zo_sgd", **SETTINGS), quadratic_task, steps=10, seed=3)
    assert trend.losses == sgd.losses and trend.queries == sgd.queries


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"strength": -1.0}, r"strength=-1\.0"), ({"decay": 1.0}, r"decay=1\.0"),
     ({"estimator": "sphere"}, "estimator='sphere'")],
)  # fmt: skip
def test_bad_settings_name_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        l2l.make_optimizer("zo_trend", **changes)


def test_the_committed_tuning_was_chosen_on_val_for_both_tasks():
    tuned = registry.load_tuned()["tasks"]
    for task in ("mnist_attack", "binary_classification"):
        params = registry.tuned_params("zo_trend", task)
        assert params["delta"] > 0 and 0 <= params["decay"] < 1 and params["strength"] > 0, task
        assert tuned[task]["zo_trend"]["tuned_on"]["split"] == "val"
        assert l2l.make_optimizer("zo_trend", task=task).delta == params["delta"]
