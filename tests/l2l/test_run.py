"""``l2l.run`` records f(x_k) without a second model pass where the step already evaluated x_k alone."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.oracle import Oracle

STEPS = 30


@pytest.fixture(scope="module")
def task():
    return l2l.make_family("mnist_attack_linf", eps=0.3, sizes=(1, 1, None)).instance("val", 0)


def counted_rows(task) -> list[int]:
    """Rows through the task's model, appended per forward pass (a hook on the shared model)."""
    rows: list[int] = []
    handle = task.model.register_forward_hook(lambda _m, inputs, _out: rows.append(inputs[0].shape[0]))
    return rows, handle


@pytest.mark.parametrize("name", ["square", "signhunter", "simba", "zo_adam"])
def test_reuse_records_the_same_bits_as_recomputing(name, task, monkeypatch):
    opt = l2l.make_optimizer(name, task="mnist_attack_linf")
    reused = l2l.run(opt, task, STEPS, seed=2)
    monkeypatch.setattr(Oracle, "recall", lambda self, x: None)  # always recompute, as before
    recomputed = l2l.run(opt, task, STEPS, seed=2)
    assert reused.losses == recomputed.losses and reused.queries == recomputed.queries
    assert reused.success_step == recomputed.success_step and torch.equal(reused.x, recomputed.x)


@pytest.mark.parametrize("name", ["square", "signhunter"])
def test_one_query_attacks_cost_one_model_row_per_query(name, task):
    rows, handle = counted_rows(task)
    try:
        traj = l2l.run(l2l.make_optimizer(name, task="mnist_attack_linf"), task, STEPS, seed=0)
    finally:
        handle.remove()
    # the x0 record is the only pass that is not a query; every later record is recalled
    assert sum(rows) == traj.queries[-1] + 1 and len(rows) == STEPS + 1


def test_batched_rows_are_not_reused(task):
    rows, handle = counted_rows(task)
    try:
        traj = l2l.run(l2l.make_optimizer("zo_adam", task="mnist_attack_linf", q=4), task, 5, seed=0)
    finally:
        handle.remove()
    # a batched forward may round differently in the last bits, so each record is its own pass
    assert sum(rows) == traj.queries[-1] + 6


def test_oracle_recall_is_exact_and_uncounted(task):
    oracle = Oracle(task)
    x = torch.zeros(task.dim)
    value = oracle(x.unsqueeze(0))[0]
    loss, ok = oracle.recall(x)
    assert torch.equal(loss, value) and oracle.queries == 1
    assert torch.equal(loss, task.loss(x.unsqueeze(0))[0]) and bool(ok) is False
    nudged = x.clone()
    nudged[0] = 1e-7
    assert oracle.recall(nudged) is None
