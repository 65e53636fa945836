"""l2l.run_many: B runs in lockstep through one stacked oracle call per step equal the serial runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import l2l
from eval import compare
from eval.headtohead import grid_units
from l2l.optimizers.zo_sgd import ZOSGD
from l2l.oracle import NonFiniteLoss, Oracle, QueryBudgetExceeded, StackedOracle
from l2l.run_many import agree
from l2l.tasks.quadratic import QuadraticTask
from tests.helpers import without_timings
from tests.l2l.optimizers.test_contracts import OPTIMIZERS, STEPS, cheap_optimizer, same_trajectory, task_for
from tests.l2l.test_oracle import CountingTask

SEEDS = [5, 6, 7]


def _serial(optimizer, tasks, steps, budgets=None, seeds=SEEDS, stop_at_success=False):
    budgets = budgets or [None] * len(tasks)
    return [
        l2l.run(optimizer, task, steps, budget=b, seed=s, stop_at_success=stop_at_success)
        for task, b, s in zip(tasks, budgets, seeds, strict=True)
    ]


def _quadratics(n: int = 3) -> list[QuadraticTask]:
    return l2l.make_family("quadratic").instances("test", limit=n)


def _assert_close(batched, serial, rtol=1e-5, atol=1e-6, loss_atol=0.0):
    for many, one in zip(batched, serial, strict=True):
        assert many.queries == one.queries and many.success_step == one.success_step
        assert many.success_query == one.success_query
        assert many.losses == pytest.approx(one.losses, rel=rtol, abs=loss_atol)
        assert torch.allclose(many.x, one.x, rtol=rtol, atol=atol)
        assert (loss_atol or agree(many, one, rtol)) and many.wall_s > 0


@pytest.mark.parametrize("name", ["zo_sgd", "zo_adam"])
def test_lockstep_equals_serial_on_mnist_attack(name, mnist_family):
    # mu 0.01, not the tuned 1e-4: the model's batched forward rounds differently from the single one
    # (how much depends on the CPU's kernels), and the estimate divides that rounding by mu; at 1e-4 it
    # grew to 1% of the loss within 8 ZO-SGD steps on one machine; at 0.01 the losses agree to 1e-5
    # relative and the iterates to 2e-5
    tasks = mnist_family.instances("val", limit=3)
    optimizer = l2l.make_optimizer(name, task="mnist_attack", q=5, mu=0.01)
    assert l2l.runs_in_lockstep(optimizer)
    batched = l2l.run_many(optimizer, tasks, steps=8, seeds=SEEDS)
    _assert_close(batched, _serial(optimizer, tasks, 8), rtol=1e-4, atol=5e-5)
    assert all(t.x.abs().max() > 0 and t.losses[-1] != t.losses[0] for t in batched)  # the runs moved


@pytest.mark.parametrize("name", ["zo_sgd", "zo_adam"])
def test_lockstep_equals_serial_on_stochastic_binary_classification(name):
    tasks = l2l.make_family("binary_classification").instances("test", limit=3)
    optimizer = l2l.make_optimizer(name, task="binary_classification", q=5)
    batched = l2l.run_many(optimizer, tasks, steps=6, seeds=SEEDS)
    _assert_close(batched, _serial(optimizer, tasks, 6))


def test_looping_loss_many_gives_the_serial_runs_bit_for_bit():
    tasks, optimizer = _quadratics(), l2l.make_optimizer("zo_adam", q=4)
    for many, one in zip(
        l2l.run_many(optimizer, tasks, 6, seeds=SEEDS), _serial(optimizer, tasks, 6), strict=True
    ):
        assert many.losses == one.losses and torch.equal(many.x, one.x)


def test_each_instance_stops_at_its_own_budget():
    tasks, optimizer = _quadratics(), l2l.make_optimizer("zo_sgd", q=4)  # 5 queries per step
    budgets = [0, 23, None]
    batched = l2l.run_many(optimizer, tasks, steps=10, budget=budgets, seeds=SEEDS)
    assert [t.steps for t in batched] == [0, 4, 10]
    assert [t.queries[-1] for t in batched] == [0, 20, 50]
    for traj, one in zip(batched, _serial(optimizer, tasks, 10, budgets), strict=True):
        assert traj.losses == one.losses and traj.queries == one.queries


class LevelQuadratic(QuadraticTask):
    """A quadratic that counts as solved once its loss is at most ``level`` (a cheap success notion)."""

    def __init__(self, base: QuadraticTask, level: float):
        super().__init__(base.A, base.b)
        self.level = level

    def success(self, X: torch.Tensor) -> torch.Tensor:
        return self.loss(X) <= self.level


def test_each_instance_stops_at_its_own_success():
    base, optimizer = _quadratics(), l2l.make_optimizer("zo_sgd", q=4)
    reference = _serial(optimizer, base, 10)
    # instance 0 is solved by step 2's loss, instance 1 by step 6's, instance 2 never
    tasks = [LevelQuadratic(base[0], reference[0].losses[2]), LevelQuadratic(base[1], reference[1].losses[6])]
    tasks.append(LevelQuadratic(base[2], -1.0))
    batched = l2l.run_many(optimizer, tasks, steps=10, seeds=SEEDS, stop_at_success=True)
    serial = _serial(optimizer, tasks, 10, stop_at_success=True)
    hits = [t.success_step for t in batched]
    assert hits == [t.success_step for t in serial] and hits[0] < hits[1] <= 6 and hits[2] is None
    assert [t.steps for t in batched] == [hits[0], hits[1], 10]  # a solved instance drops out
    assert [t.success_query for t in batched] == [5 * hits[0], 5 * hits[1], None]
    assert all(m.losses == s.losses for m, s in zip(batched, serial, strict=True))


class Seen:
    """An observer that notes (steps, queries spent, last loss, x) at every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, state, oracle, traj):
        self.calls.append((traj.steps, oracle.queries, traj.losses[-1], state.x.clone()))


def test_each_instance_callback_sees_what_l2l_run_shows_it():
    tasks, optimizer = _quadratics(), l2l.make_optimizer("zo_sgd", q=4)
    budgets = [0, 23, None]  # 0, 4 and 10 steps: a lane that stops is observed no more
    batched, serial = [Seen() for _ in tasks], [Seen() for _ in tasks]
    l2l.run_many(optimizer, tasks, 10, budget=budgets, seeds=SEEDS, callbacks=batched)
    for task, b, s, seen in zip(tasks, budgets, SEEDS, serial, strict=True):
        l2l.run(optimizer, task, 10, budget=b, seed=s, callback=seen)
    assert [len(seen.calls) for seen in batched] == [1, 5, 11]
    for many, one in zip(batched, serial, strict=True):
        assert [c[:3] for c in many.calls] == [c[:3] for c in one.calls]
        assert all(torch.equal(m[3], o[3]) for m, o in zip(many.calls, one.calls, strict=True))


def test_a_callback_that_queries_is_refused_and_callbacks_must_match_the_tasks():
    tasks, optimizer = _quadratics(2), l2l.make_optimizer("zo_sgd", q=4)

    def spender(state, oracle, traj):
        oracle(state.x.unsqueeze(0))

    with pytest.raises(RuntimeError, match="must not spend the run's queries"):
        l2l.run_many(optimizer, tasks, 3, seeds=SEEDS[:2], callbacks=[None, spender])
    with pytest.raises(ValueError, match="callbacks has 1 entries for 2 tasks"):
        l2l.run_many(optimizer, tasks, 3, seeds=SEEDS[:2], callbacks=[None])


def test_optimizer_without_lockstep_falls_back_to_serial_runs_exactly():
    tasks, optimizer = _quadratics(2), l2l.make_optimizer("guided_es", q=4)
    assert not optimizer.lockstep and not l2l.runs_in_lockstep(optimizer)
    mixed = [tasks[0], CountingTask(dim=tasks[0].dim)]  # no stacking needed, so any tasks go
    for many, one in zip(
        l2l.run_many(optimizer, mixed, 5, budget=[None, 11], seeds=SEEDS[:2]),
        _serial(optimizer, mixed, 5, [None, 11], SEEDS[:2]),
        strict=True,
    ):
        assert many.losses == one.losses and many.queries == one.queries and torch.equal(many.x, one.x)


def test_stacked_oracle_counts_per_instance_and_refuses_before_evaluating():
    tasks = [CountingTask(), CountingTask()]
    stacked = StackedOracle(tasks, budgets=[10, 4])
    first, second = stacked([torch.zeros(3, 3), torch.ones(2, 3)])
    assert first.tolist() == [0.0] * 3 and second.tolist() == [3.0] * 2
    assert [o.queries for o in stacked.oracles] == [3, 2] and [o.calls for o in stacked.oracles] == [1, 1]
    with pytest.raises(QueryBudgetExceeded, match=r"member 1 .*budget of 4"):
        stacked([torch.zeros(1, 3), torch.zeros(3, 3)])
    assert [o.queries for o in stacked.oracles] == [3, 2] and [t.rows_evaluated for t in tasks] == [3, 2]
    (only,) = stacked([torch.zeros(2, 3)], members=[1])  # exactly reaching the budget is allowed
    assert stacked.oracles[1].remaining == 0 and only.shape == (2,)
    losses = [float(loss) for loss, _ in stacked.measure([torch.zeros(3), torch.ones(3)])]
    assert losses == [0.0, 3.0] and [o.queries for o in stacked.oracles] == [3, 4]  # measuring is free


def test_stacked_oracle_checks_every_member_for_non_finite_losses():
    stacked = StackedOracle([CountingTask(), CountingTask(value=float("nan"))])
    with pytest.raises(NonFiniteLoss, match="member 1"):
        stacked([torch.zeros(2, 3), torch.zeros(2, 3)])


def test_stacked_attack_uses_each_instance_label_and_image(mnist_family):
    tasks = mnist_family.instances("val", limit=3)
    assert len({t.label for t in tasks}) > 1  # else the check below could not tell labels apart
    rows = [
        0.05 * torch.randn(4, t.dim, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(tasks)
    ]
    stacked = StackedOracle(tasks)
    for task, X, value in zip(tasks, rows, stacked(rows), strict=True):
        assert torch.allclose(value, Oracle(task)(X), rtol=1e-5, atol=1e-6)
    for task, X, (loss, ok) in zip(tasks, rows, stacked.measure([X[0] for X in rows]), strict=True):
        one_loss, one_ok = task.loss_and_success(X[:1])
        assert torch.allclose(loss, one_loss[0], rtol=1e-5) and bool(ok) == bool(one_ok[0])


def test_bad_inputs_are_refused_with_clear_errors(mnist_family):
    optimizer, tasks = l2l.make_optimizer("zo_sgd", q=4), _quadratics(2)
    with pytest.raises(ValueError, match="at least one task"):
        l2l.run_many(optimizer, [], 3)
    with pytest.raises(ValueError, match="seeds has 1 entries for 2 tasks"):
        l2l.run_many(optimizer, tasks, 3, seeds=[0])
    with pytest.raises(ValueError, match="budget has 3 entries for 2 tasks"):
        l2l.run_many(optimizer, tasks, 3, budget=[5, 5, 5])
    with pytest.raises(ValueError, match="steps=-1"):
        l2l.run_many(optimizer, tasks, -1)
    with pytest.raises(ValueError, match="stack key"):
        l2l.run_many(optimizer, [tasks[0], CountingTask(dim=tasks[0].dim)], 3)
    with pytest.raises(ValueError, match="stack key"):
        StackedOracle([mnist_family.instance("val", 0), tasks[0]])
    with pytest.raises(ValueError, match="at least one task"):
        StackedOracle([])
    with pytest.raises(ValueError, match="distinct indices"):
        StackedOracle(tasks)([torch.zeros(1, tasks[0].dim)] * 2, members=[0, 0])


@dataclass
class MisreportingSGD(ZOSGD):
    """ZO-SGD that announces one query fewer than its step proposes."""

    def queries_per_step(self, dim: int) -> int:
        return self.q


def test_lockstep_refuses_a_step_that_misreports_its_cost():
    optimizer = MisreportingSGD(q=4)
    assert optimizer.lockstep
    with pytest.raises(RuntimeError, match="announced 4 queries for its step but spent 5"):
        l2l.run_many(optimizer, _quadratics(2), 3)


def test_grid_units_group_lockstep_optimizers_only():
    optimizers = [("sgd", l2l.make_optimizer("zo_sgd")), ("ges", l2l.make_optimizer("guided_es"))]
    units = grid_units(optimizers, n_tasks=3, trials=2, vectorize=2)
    assert units[:4] == [(0, (0, 1), 0), (0, (2,), 0), (0, (0, 1), 1), (0, (2,), 1)]
    assert units[4:] == [(1, (i,), t) for i in range(3) for t in range(2)]
    assert grid_units(optimizers, 3, 2) == [
        (k, (i,), t) for k in range(2) for i in range(3) for t in range(2)
    ]
    with pytest.raises(ValueError, match="vectorize=0"):
        grid_units(optimizers, 3, 2, vectorize=0)


def _compare_json(path: Path, *extra: str, task: str = "quadratic", optimizers: str = "zo_adam,guided_es"):
    """The JSON of a small ``eval.compare`` run, without timings and without its ``vectorize`` setting."""
    extra = extra or ("--vectorize", "1")  # the default batches
    argv = [
        "--task", task, "--methods", optimizers, "--instances", "3", "--trials", "2", "--steps", "6",
        "--q", "4", "--wandb", "disabled", "--out", str(path), *extra,
    ]  # fmt: skip
    compare.main(argv)
    result = without_timings(json.loads(path.read_text()))
    assert result.pop("vectorize") == int(extra[extra.index("--vectorize") + 1])
    return result


@pytest.mark.slow
def test_compare_vectorize_writes_the_serial_results_and_composes_with_workers(tmp_path, capsys):
    serial = _compare_json(tmp_path / "serial.json")
    vectorized = _compare_json(tmp_path / "vector.json", "--vectorize", "2")
    assert vectorized == serial  # quadratics loop in loss_many: the same bits
    sharded = _compare_json(tmp_path / "sharded.json", "--vectorize", "2", "--workers", "2")
    assert sharded == vectorized


@pytest.mark.slow
def test_compare_vectorize_matches_serial_attacks_to_float_tolerance(tmp_path, capsys):
    attack = {"task": "mnist_attack", "optimizers": "zo_adam"}
    serial = _compare_json(tmp_path / "s.json", **attack)
    vectorized = _compare_json(tmp_path / "v.json", "--vectorize", "3", **attack)
    assert len(serial["per_run"]) == len(vectorized["per_run"]) == 6
    for one, many in zip(serial["per_run"], vectorized["per_run"], strict=True):
        assert many["final_loss"] == pytest.approx(one["final_loss"], rel=1e-5)
        assert {k: v for k, v in many.items() if k != "final_loss"} == {
            k: v for k, v in one.items() if k != "final_loss"
        }


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_run_many_gives_the_serial_runs_for_every_registered_optimizer(name):
    task, optimizer = task_for(name), cheap_optimizer(name)
    batched = l2l.run_many(optimizer, [task, task], STEPS, seeds=[0, 1])
    serial = _serial(optimizer, [task, task], STEPS, seeds=[0, 1])
    if l2l.runs_in_lockstep(optimizer):
        _assert_close(batched, serial)
    else:  # the fallback is l2l.run itself
        assert all(same_trajectory(m, s) for m, s in zip(batched, serial, strict=True))


#: the search attacks that step in lockstep (one candidate or one population per step)
SEARCH_ATTACKS = ["square", "signhunter", "parsimonious", "rand", "beta", "pso", "simba", "bandits_td"]


class CountingModel(torch.nn.Module):
    """A classifier that counts its forward passes and the rows they carried."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.forwards, self.rows = model, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards, self.rows = self.forwards + 1, self.rows + x.shape[0]
        return self.model(x)


def _linf_attacks(n: int, eps: float = 0.2) -> tuple[list, CountingModel]:
    family = l2l.make_family("mnist_attack_linf", eps=eps)
    model = CountingModel(family.model)
    tasks = []
    for task in family.instances("val", limit=n):
        tasks.append(l2l.tasks.AttackTask(model, task.image, task.label, c=0.0, eps=eps, norm="linf"))
    return tasks, model


@pytest.mark.parametrize("name", SEARCH_ATTACKS)
@pytest.mark.slow
def test_search_attacks_step_in_lockstep_and_equal_their_serial_runs(name):
    tasks, _ = _linf_attacks(4)
    optimizer = l2l.make_optimizer(name, task="mnist_attack_linf")
    assert l2l.runs_in_lockstep(optimizer)
    budgets = [60, 200, 200, 35]  # a lane that spends its budget leaves while the others go on
    seeds = [*SEEDS, 8]
    batched = l2l.run_many(optimizer, tasks, steps=200, budget=budgets, seeds=seeds, stop_at_success=True)
    serial = _serial(optimizer, tasks, 200, budgets, seeds, stop_at_success=True)
    # float32 margins near 0 differ by a few 1e-6 between batch compositions (pso: 1.2e-6 at 0.097)
    _assert_close(batched, serial, loss_atol=1e-5)
    assert all(t.queries[-1] <= b for t, b in zip(batched, budgets, strict=True))


def test_a_lockstep_search_attack_costs_one_model_forward_per_step():
    """The iterate's record reuses its candidate's query, so a step is one stacked forward."""
    tasks, model = _linf_attacks(5, eps=0.05)  # small: nobody succeeds within the steps
    trajectories = l2l.run_many(l2l.make_optimizer("signhunter"), tasks, steps=30, seeds=[0] * 5)
    assert all(t.success_step is None and len(t.queries) == 31 for t in trajectories)
    assert model.forwards == 1 + 30  # the starts' record, then one forward per step for all five
    assert model.rows == 5 * 31


def test_a_finished_lane_spends_nothing_more():
    tasks, model = _linf_attacks(3, eps=0.3)
    optimizer = l2l.make_optimizer("square", task="mnist_attack_linf")
    budgets = [10, 500, 500]
    batched = l2l.run_many(optimizer, tasks, steps=500, budget=budgets, seeds=SEEDS, stop_at_success=True)
    assert batched[0].queries[-1] <= 10 and model.rows == 3 + sum(t.queries[-1] for t in batched)
