"""Bandits-TD and SimBA: exact query costs, feasibility, the DCT basis, determinism, and that they attack."""

from __future__ import annotations

import math

import pytest
import torch

import l2l
from eval import tune
from l2l.optimizers.bandits_td import prior_shape, upsample
from l2l.optimizers.simba import dct_matrix, dct_vector, low_frequency_mask, lowers, search_order
from l2l.oracle import Oracle
from l2l.run import run


@pytest.fixture(scope="module")
def linf_tasks():
    return l2l.make_family("mnist_attack_linf", sizes=(5, 5, None)).instances("val", limit=3)


@pytest.fixture(scope="module")
def l2_tasks():
    return l2l.make_family("mnist_attack_l2", sizes=(5, 5, None)).instances("val", limit=3)


def tiny_task(norm: str = "l2", eps: float = 0.5, shape=(2, 4, 4)) -> l2l.tasks.AttackTask:
    """A cheap image attack (a linear model on a 2 x 4 x 4 image) with likelihood outputs."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(math.prod(shape), 3))
    image = torch.rand(1, *shape)
    label = int(model(image).argmax())
    return l2l.tasks.AttackTask(model, image[0], label=label, c=0.0, eps=eps, norm=norm)


def feasible(task: l2l.tasks.AttackTask, x: torch.Tensor) -> bool:
    """x in the task's ball (1e-5 slack) and image + x in the box [0, 1]."""
    ball = task.ball
    size = torch.linalg.vector_norm(x, ord=math.inf if ball.norm == "linf" else 2)
    adv = task.image.flatten() + x
    return bool(size <= ball.eps + 1e-5 and adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6)


# ---- query costs -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["linf_tasks", "l2_tasks"])
def test_bandits_spends_exactly_two_queries_per_step(family, request):
    task = request.getfixturevalue(family)[0]
    opt = l2l.make_optimizer("bandits_td")
    traj = run(opt, task, steps=6, seed=0)  # run() also raises if a step spends other than it announced
    assert traj.queries == [0, 2, 4, 6, 8, 10, 12]
    assert opt.queries_per_step(task.dim) == 2 and not opt.evaluates_iterate


def test_simba_spends_one_query_per_half_try_plus_the_start(l2_tasks):
    opt = l2l.make_optimizer("simba")
    traj = run(opt, l2_tasks[0], steps=6, seed=0)
    assert traj.queries == [0, 2, 3, 4, 5, 6, 7]
    assert opt.queries_per_step(784) == 1 and opt.evaluates_iterate


def test_simba_tries_each_direction_at_most_once_per_sign_then_stops():
    task = tiny_task()
    opt = l2l.make_optimizer("simba", basis="dct", step_size=0.1)
    oracle, state = Oracle(task), opt.init(task.x0(), seed=3)
    indices, signs = [], []
    real_direction = opt.direction
    opt.direction = lambda st, index: indices.append(index) or real_direction(st, index)
    for _ in range(3 * task.dim):
        before, cost, x_before = oracle.queries, opt.next_step_queries(state, task.dim), state.x.clone()
        if cost:
            signs.append(state.slots.get("sign", -1.0))  # the sign this half-try uses
        opt.step(state, oracle)
        assert oracle.queries - before == cost
        if not cost:
            assert torch.equal(state.x, x_before)  # exhausted: free and idle
    tried = list(zip(indices, signs, strict=True))
    assert len(tried) == len(set(tried)), "a basis direction was tried twice with the same sign"
    minus = {i for i, s in tried if s < 0}
    assert minus == set(range(task.dim))  # every direction was tried, x - eps q first
    assert {i for i, s in tried if s > 0} <= minus
    assert opt.next_step_queries(state, task.dim) == 0


def test_simba_in_lockstep_runs_past_its_last_direction_like_the_serial_runs():
    """Lanes whose directions run out take free, idle steps while the others still query."""
    task = tiny_task()  # d = 32: 64 half-tries at most
    other = l2l.tasks.AttackTask(task.model, task.image.flip(-1), task.label, c=0.0, eps=0.5, norm="l2")
    opt = l2l.make_optimizer("simba", basis="pixel", step_size=0.05)
    assert l2l.runs_in_lockstep(opt) and opt.lockstep_values == "loss_and_likelihood"
    batched = l2l.run_many(opt, [task, other], steps=100, seeds=[1, 2])
    serial = [l2l.run(opt, t, steps=100, seed=s) for t, s in ((task, 1), (other, 2))]
    for many, one in zip(batched, serial, strict=True):
        assert many.queries == one.queries and many.queries[-1] < 100  # it ran out before 100 steps
        assert many.losses == pytest.approx(one.losses, rel=1e-5, abs=1e-6)


def test_simba_accepts_a_lower_probability_and_breaks_exact_ties_by_the_margin():
    t = torch.tensor
    assert lowers(t(-0.2), t(5.0), t(-0.1), t(1.0))  # p_true fell: kept, whatever the margin does
    assert not lowers(t(-0.1), t(0.5), t(-0.2), t(1.0))  # p_true rose
    assert lowers(t(0.0), t(3.0), t(0.0), t(4.0))  # saturated p_true = 1: the margin decides
    assert not lowers(t(0.0), t(4.0), t(0.0), t(4.0))  # an unchanged candidate (clipped away) is not kept


# ---- the bases and the prior -------------------------------------------------------------------


def test_dct_basis_is_orthonormal():
    for n in (1, 5, 28):
        rows = dct_matrix(n, torch.float64)
        assert torch.allclose(rows @ rows.T, torch.eye(n, dtype=torch.float64), atol=1e-10)
    shape = (2, 5, 6)
    rows_h, rows_w = dct_matrix(5, torch.float64), dct_matrix(6, torch.float64)
    basis = torch.stack([dct_vector(k, shape, rows_h, rows_w) for k in range(60)])
    assert torch.allclose(basis @ basis.T, torch.eye(60, dtype=torch.float64), atol=1e-10)
    constant = torch.zeros(60, dtype=torch.float64)
    constant[:30] = 1 / math.sqrt(30)
    assert torch.allclose(basis[0], constant)  # (c=0, u=0, v=0): the constant image on channel 0


def test_search_order_is_a_permutation_with_low_frequencies_first():
    shape = (1, 28, 28)
    rng = torch.Generator().manual_seed(0)
    for basis in ("pixel", "dct"):
        order = search_order(shape, basis, rng)
        assert sorted(order.tolist()) == list(range(784))
    low = low_frequency_mask(shape)
    assert int(low.sum()) == 16  # ceil(28 / 8) = 4 frequencies per side
    assert bool(low[order[:16]].all()) and not bool(low[order[16:]].any())


def test_bandits_prior_tiles_cover_the_image():
    shape = (1, 28, 28)
    assert prior_shape(shape, 4) == (1, 7, 7) and prior_shape(shape, 3) == (1, 10, 10)
    v = torch.arange(100.0).view(1, 10, 10)
    up = upsample(v, 3, shape).view(shape)
    assert up.shape == shape and up[0, 0, 2] == 0 and up[0, 0, 3] == 1 and up[0, 27, 27] == 99


# ---- feasibility and determinism ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "norm", "params"),
    [("bandits_td", "linf", {}), ("bandits_td", "l2", {}), ("simba", "l2", {"step_size": 0.4}),
     ("simba", "linf", {"basis": "pixel"})],
)  # fmt: skip
def test_every_iterate_is_feasible(name, norm, params):
    task = tiny_task(norm=norm, eps=0.3)
    opt = l2l.make_optimizer(name, **params)
    oracle, state = Oracle(task), opt.init(task.x0(), seed=1)
    moved = False
    for _ in range(40):
        opt.step(state, oracle)
        assert feasible(task, state.x)
        moved = moved or bool(state.x.abs().max() > 0)
    assert moved


@pytest.mark.parametrize("name", ["bandits_td", "simba"])
def test_same_seed_same_trajectory(name):
    task = tiny_task()
    opt = l2l.make_optimizer(name)
    first, again, other = (run(opt, task, steps=15, seed=s) for s in (4, 4, 5))
    assert first.losses == again.losses and torch.equal(first.x, again.x)
    assert not torch.equal(first.x, other.x)


# ---- they attack -------------------------------------------------------------------------------


@pytest.mark.slow
def test_bandits_fools_the_model_on_linf_val_images(linf_tasks):
    trajs = [run(l2l.make_optimizer("bandits_td"), t, steps=300, budget=600, seed=i, stop_at_success=True)
             for i, t in enumerate(linf_tasks)]  # fmt: skip
    assert sum(t.success_step is not None for t in trajs) >= 2  # measured: all 3, at 172, 94, 22 queries
    assert all(t.final_loss < 0.5 * t.losses[0] for t in trajs)


@pytest.mark.slow
def test_bandits_lowers_the_l2_margin(l2_tasks):
    trajs = [run(l2l.make_optimizer("bandits_td"), t, steps=150, seed=i) for i, t in enumerate(l2_tasks)]
    assert all(t.final_loss < 0.9 * t.losses[0] for t in trajs)  # measured: 0.78, 0.59 and 0 (fooled)


@pytest.mark.slow
def test_simba_lowers_the_l2_margin(l2_tasks):
    trajs = [run(l2l.make_optimizer("simba"), t, steps=300, seed=i) for i, t in enumerate(l2_tasks)]
    assert all(t.final_loss < 0.8 * t.losses[0] for t in trajs)  # measured: 0.64, 0.34 and 0.43


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [("bandits_td", {"image_lr": 0.0}, "image_lr=0.0"), ("bandits_td", {"fd_eta": -1.0}, "fd_eta=-1.0"),
     ("bandits_td", {"tile": 0}, "tile=0"), ("bandits_td", {"tile": 2.5}, "tile=2.5"),
     ("simba", {"step_size": 0}, "step_size=0"), ("simba", {"basis": "haar"}, "basis='haar'")],
)  # fmt: skip
def test_bad_arguments_raise_clear_errors(name, params, match):
    with pytest.raises(ValueError, match=match):
        l2l.make_optimizer(name, **params)


def test_tasks_without_the_needed_capabilities_are_refused(quadratic_task):
    no_ball = l2l.tasks.AttackTask(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)),
                                   torch.rand(1, 2, 2), label=0)  # fmt: skip
    with pytest.raises(ValueError, match="ball"):
        run(l2l.make_optimizer("bandits_td"), no_ball, steps=1)
    with pytest.raises(ValueError, match="likelihood"):
        run(l2l.make_optimizer("simba"), quadratic_task, steps=1)


def test_tuning_spaces_start_from_the_defaults_and_print():
    cfg = tune.TuneConfig()
    spaces = {"bandits_td": {"image_lr", "online_lr", "fd_eta", "tile"}, "simba": {"step_size", "basis"}}
    for name, keys in spaces.items():
        params = tune.start_params(name, cfg)
        assert set(params) == keys
        assert tune.stage_sizes(name, cfg) == sum(len(stage.values) for stage in tune.search_space(name))
        for row in tune.candidates(tune.search_space(name)[0], params, cfg):
            assert l2l.make_optimizer(name, **row).config() == {**l2l.make_optimizer(name).config(), **row}
    assert tune._short({"step_size": 0.2, "basis": "dct", "online_lr": None}) == (
        "step_size=0.2 basis=dct online_lr=None"
    )
