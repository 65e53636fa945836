"""cma_es (pycma): popsize queries per generation on one minibatch, exact budgets, bit-for-bit seeds."""

from __future__ import annotations

import copy
import importlib
import math
import pickle

import numpy as np
import pytest
import torch

import l2l
from l2l.optimizers.cma_es import default_popsize
from l2l.oracle import Oracle
from l2l.tasks.quadratic import QuadraticTask

# the module, not the function l2l.run that the package exports under the same name
run_module = importlib.import_module("l2l.run")


def test_default_popsize_is_pycmas():
    import cma

    for dim in (1, 2, 10, 31, 100):
        expected = cma.CMAEvolutionStrategy(np.zeros(dim), 1.0, {"verbose": -9, "seed": np.nan}).popsize
        assert default_popsize(dim) == expected == 4 + math.floor(3 * math.log(dim))
    assert l2l.make_optimizer("cma_es").queries_per_step(100) == 17


@pytest.mark.parametrize("popsize", [None, 2, 7])
def test_each_step_costs_popsize_queries(popsize, quadratic_task):
    opt = l2l.make_optimizer("cma_es", popsize=popsize)
    traj = l2l.run(opt, quadratic_task, steps=12, seed=0)
    expected = 10 if popsize is None else popsize  # d = 10: 4 + floor(3 ln 10) = 10
    assert opt.queries_per_step(quadratic_task.dim) == expected
    assert np.diff(traj.queries).tolist() == [expected] * 12


@pytest.mark.parametrize(("budget", "steps", "spent"), [(20, 2, 14), (21, 3, 21), (27, 3, 21), (28, 4, 28)])
def test_budget_stops_before_the_generation_that_would_exceed_it(budget, steps, spent, quadratic_task):
    traj = l2l.run(l2l.make_optimizer("cma_es", popsize=7), quadratic_task, steps=50, budget=budget, seed=0)
    assert (traj.steps, traj.queries[-1]) == (steps, spent)


def _trajectory(opt, task, seed: int, steps: int) -> list[torch.Tensor]:
    oracle, state = Oracle(task), opt.init(task.x0(), seed=seed)
    xs = []
    for _ in range(steps):
        state = opt.step(state, oracle)
        xs.append(state.x.clone())
    return xs


def test_same_seed_same_trajectory_bit_for_bit(quadratic_task):
    opt = l2l.make_optimizer("cma_es", sigma0=0.5)
    a = l2l.run(opt, quadratic_task, steps=30, seed=5)
    np.random.seed(123)  # pycma's default sampler reads numpy's global RNG; this one must not
    np.random.standard_normal(1000)
    b = l2l.run(opt, quadratic_task, steps=30, seed=5)
    c = l2l.run(opt, quadratic_task, steps=30, seed=6)
    assert a.losses == b.losses and torch.equal(a.x, b.x)
    assert a.losses != c.losses


def test_interleaved_runs_and_deep_copies_reproduce(quadratic_task):
    opt, task = l2l.make_optimizer("cma_es"), quadratic_task
    solo = _trajectory(opt, task, seed=1, steps=15)
    oracles = [Oracle(task), Oracle(task)]
    states = [opt.init(task.x0(), seed=1), opt.init(task.x0(), seed=2)]
    interleaved = []
    for k in range(15):
        for i in (0, 1):
            states[i] = opt.step(states[i], oracles[i])
        interleaved.append(states[0].x.clone())
        if k == 7:  # a deep copy or a pickled state carries the ES and its generator along
            twins = [copy.deepcopy(states[0]), pickle.loads(pickle.dumps(states[0]))]
    assert all(torch.equal(p, q) for p, q in zip(solo, interleaved, strict=True))
    for twin in twins:
        twin_oracle = Oracle(task)
        for _ in range(7):
            twin = opt.step(twin, twin_oracle)
        assert torch.equal(twin.x, states[0].x)
    assert not torch.equal(states[0].x, states[1].x)


def test_lowers_a_quadratic_to_its_minimum(quadratic_task):
    A, b = quadratic_task.A.double(), quadratic_task.b.double()
    best = quadratic_task.loss(torch.linalg.lstsq(A, b.unsqueeze(1)).solution.T.float())[0].item()
    traj = l2l.run(l2l.make_optimizer("cma_es"), quadratic_task, steps=150, seed=0)
    # f(x0) ~ 1.01, min ~ 0.371; measured over seeds 0-3: within 1e-6 of the minimum after 150 steps
    assert traj.losses[0] > 1.0
    assert traj.final_loss < best + 1e-3
    assert traj.x.dtype == torch.float32


@pytest.mark.slow
def test_lowers_a_binary_classification_loss():
    task = l2l.make_task("binary_classification", split="val", index=0)
    traj = l2l.run(l2l.make_optimizer("cma_es", sigma0=0.3), task, steps=300, seed=0)
    # f(0) = 0.25; measured final loss after 300 steps, seeds 0-3: 0.080, 0.134, 0.090, 0.102
    assert traj.losses[0] == pytest.approx(0.25)
    assert traj.final_loss < 0.15


class SpyOracle(Oracle):
    """Records, per oracle call, how many rows it got and which minibatch was set."""

    log: list[tuple[str, object]]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []
        SpyOracle.last = self

    def set_batch(self, batch):
        self.log.append(("batch", batch))
        super().set_batch(batch)

    def __call__(self, X):
        self.log.append(("call", (X.shape[0], self.batch)))
        return super().__call__(X)


def test_a_generation_is_one_oracle_call_on_one_minibatch(monkeypatch):
    monkeypatch.setattr(run_module, "Oracle", SpyOracle)
    task = l2l.make_task("binary_classification", split="val", index=0)
    l2l.run(l2l.make_optimizer("cma_es", popsize=9), task, steps=5, seed=0)
    log = SpyOracle.last.log
    assert [kind for kind, _ in log] == ["batch", "call"] * 5
    for (_, batch), (_, (rows, seen)) in zip(log[::2], log[1::2], strict=True):
        assert rows == 9 and seen is batch and batch is not None


class BoxQuadratic(QuadraticTask):
    """A quadratic constrained to the box [-0.05, 0.05]^d; records every queried row."""

    def __init__(self, *args):
        super().__init__(*args)
        self.queried: list[torch.Tensor] = []

    def project(self, x):
        return x.clamp(-0.05, 0.05)

    def loss(self, X, batch=None):
        self.queried.append(X.clone())
        return super().loss(X, batch)


def test_queries_and_iterates_stay_feasible_on_a_constrained_task(quadratic_task):
    task = BoxQuadratic(quadratic_task.A, quadratic_task.b)
    opt = l2l.make_optimizer("cma_es", sigma0=1.0)
    oracle, state = Oracle(task), opt.init(task.x0(), seed=0)
    for _ in range(20):
        state = opt.step(state, oracle)
        assert state.x.abs().max() <= 0.05
    queried = torch.cat(task.queried)
    assert queried.shape[0] == 200 and queried.abs().max() <= 0.05
    assert queried.abs().max() == 0.05  # sigma0 = 1 samples far outside: the projection acted


def test_pycma_prints_and_writes_nothing(quadratic_task, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    l2l.run(l2l.make_optimizer("cma_es", sigma0=1e-9), quadratic_task, steps=40, seed=0)  # flat fitness
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert list(tmp_path.iterdir()) == []


def test_protocol_details():
    opt = l2l.make_optimizer("cma_es", sigma0=0.2, popsize=11)
    assert opt.evaluates_iterate is False
    assert opt.config() == {"sigma0": 0.2, "popsize": 11}
    assert l2l.make_optimizer("cma_es", **opt.config()) == opt


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sigma0": 0.0}, "sigma0=0.0"),
        ({"sigma0": -0.1}, "sigma0=-0.1"),
        ({"sigma0": float("nan")}, "sigma0=nan"),
        ({"sigma0": float("inf")}, "sigma0=inf"),
        ({"popsize": 1}, "popsize=1"),
        ({"popsize": 0}, "popsize=0"),
        ({"popsize": 2.5}, "popsize=2.5"),
        ({"popsize": True}, "popsize=True"),
    ],
)
def test_bad_settings_raise_clear_errors(params, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")) as info:
        l2l.make_optimizer("cma_es", **params)
    assert ("> 0" in str(info.value)) if "sigma0" in params else (">= 2" in str(info.value))


@pytest.mark.slow
def test_tune_searches_sigma0_and_popsize(tmp_path, monkeypatch):
    from eval import tune
    from l2l.optimizers.core import tuned as registry

    monkeypatch.setattr(registry, "TUNED_PATH", tmp_path / "tuned.json")
    args = ["--task", "quadratic", "--methods", "cma_es", "--instances", "1", "--steps", "5"]
    result = tune.main(args)["cma_es"]
    tried = [row["params"] for row in result["grid"]]
    assert {p["sigma0"] for p in tried} == {0.01, 0.03, 0.1, 0.3, 1.0}
    assert {p["popsize"] for p in tried} == {None, 32, 64}
    assert all("q" not in p for p in tried)  # tune's shared q goes to methods with a q field only
    assert l2l.make_optimizer("cma_es", task="quadratic").config() == result["params"]
