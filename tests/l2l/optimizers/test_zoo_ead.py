"""ZOO (coordinate Adam/Newton, attack space) and EAD (ZO and white-box FISTA, PGD): estimates, the
shrinkage operator, feasibility, descent, query accounting, the hierarchical schedule, bad input."""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.optimizers.core.attack_space import IMPORTANCE_FLOOR, AttackSpace
from l2l.optimizers.core.fista import shrink_threshold
from l2l.optimizers.core.zoo import coordinate_derivatives
from l2l.optimizers.zoo_adam import success_callback
from l2l.oracle import Oracle
from l2l.tasks.base import Task, check_rows
from l2l.tasks.quadratic import QuadraticFamily

NEW = ["zoo_adam", "zoo_newton", "zo_ead", "fo_ead", "fo_pgd"]
# Untuned but sane settings on the quadratic family (measured: 0.37-0.45 from f(0) = 1.01 in 60 steps).
QUADRATIC_SETTINGS = {
    "zoo_adam": {"lr": 0.05},
    "zoo_newton": {"lr": 0.5},
    "zo_ead": {"delta": 2.0, "mu": 1e-3, "q": 10},
    "fo_ead": {"delta": 5.0},
    "fo_pgd": {"delta": 5.0},
}
# On mnist_attack val 0 (f(x0) = 12.4), small budgets; measured finals after 30 steps are 2.0-10.7.
ATTACK_SETTINGS = {
    "zoo_adam": {"lr": 0.05, "batch": 32},
    "zoo_newton": {"lr": 1.0, "h": 1e-2, "batch": 32},
    "zo_ead": {"delta": 5.0, "beta": 1e-2},
    "fo_ead": {"delta": 7.84},
    "fo_pgd": {"delta": 7.84},
}


class ExpTask(Task):
    """f(x) = sum_i exp(a_i x_i): smooth, non-quadratic, with known first and second partials."""

    def __init__(self, a: torch.Tensor):
        self.a = a.double()

    @property
    def dim(self) -> int:
        return len(self.a)

    def x0(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        return torch.exp(check_rows(X, self.dim) * self.a).sum(dim=1)


class BoxTask(Task):
    """0.5 ||x - target||^2 with x kept in [-0.5, 0.5]^d by ``project``; records every queried row."""

    LO, HI = -0.5, 0.5

    def __init__(self, dim: int = 16):
        self.target = torch.linspace(-2.0, 2.0, dim)  # mostly outside the box: the projection binds
        self.queried: list[torch.Tensor] = []

    @property
    def dim(self) -> int:
        return len(self.target)

    def x0(self) -> torch.Tensor:
        return torch.zeros(self.dim)

    def loss(self, X: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        X = check_rows(X, self.dim)
        self.queried.append(X.detach().clone())
        return 0.5 * (X - self.target).pow(2).sum(dim=1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.LO, self.HI)


def in_box(x: torch.Tensor) -> bool:
    return bool((x >= BoxTask.LO).all() and (x <= BoxTask.HI).all())


# --- estimates -------------------------------------------------------------------------------------


def test_coordinate_estimates_match_true_partials_on_a_quadratic():
    task = QuadraticFamily(dim=8).instance("val", 1)
    x = torch.randn(8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    oracle = Oracle(task)
    est = coordinate_derivatives(oracle, x, torch.eye(8, dtype=torch.float64), h=1e-4)
    A = task.A.double()
    # Eq. 12 and eq. 13 are exact on a quadratic; only float64 rounding remains (~1e-12 and ~1e-8).
    assert torch.allclose(est.grad, task.gradient(x).double(), atol=1e-8)
    assert torch.allclose(est.hess, (A * A).sum(dim=0) / A.shape[0], atol=1e-5)
    assert torch.isclose(est.fx, task.loss(x)[0])
    assert est.queries == oracle.queries == 17 and oracle.calls == 1  # 2B+1 rows in one batched call


def test_coordinate_estimates_match_true_partials_on_a_smooth_non_quadratic():
    a = torch.linspace(-1.0, 1.5, 6, dtype=torch.float64)
    task, x = ExpTask(a), torch.linspace(-0.5, 0.5, 6, dtype=torch.float64)
    coords = torch.tensor([0, 2, 5])
    est = coordinate_derivatives(task.loss, x, torch.eye(6, dtype=torch.float64)[coords], h=1e-4)
    exact = torch.exp(a * x)[coords]
    # Truncation errors are O(h^2) ~ 1e-9 here; rounding in eq. 13 is ~ eps * f / h^2 ~ 1e-8.
    assert torch.allclose(est.grad, a[coords] * exact, rtol=1e-6)
    assert torch.allclose(est.hess, a[coords] ** 2 * exact, rtol=1e-6, atol=1e-6)


def test_shrinkage_matches_eq_18_on_hand_picked_values():
    center = torch.full((6,), 0.5)
    z = torch.tensor([0.55, 0.45, 0.7, 1.3, 0.2, -0.5])
    box = lambda v: v.clamp(0.0, 1.0)  # noqa: E731
    out = shrink_threshold(z, center, beta=0.1, project=box)
    # |z - x0| <= beta -> x0; z - x0 > beta -> min(z - beta, 1); z - x0 < -beta -> max(z + beta, 0)
    expected = torch.tensor([0.5, 0.5, 0.6, 1.0, 0.3, 0.0])
    assert torch.allclose(out, expected)
    assert torch.allclose(shrink_threshold(z, center, beta=0.0, project=box), box(z))  # beta = 0: projection


# --- the attack space ------------------------------------------------------------------------------


def test_upscaling_maps_a_constant_perturbation_to_a_constant_image():
    space = AttackSpace.build(784, ((7, 7), (14, 14), (28, 28)), (3, 6), None)
    assert [space.size(level) for level in range(3)] == [49, 196, 784]
    image = space.upscale(torch.full((1, 49), 0.25), 0)
    assert image.shape == (1, 784) and torch.allclose(image, torch.full_like(image, 0.25))
    grown = space.regrow(torch.full((49,), 0.25), 0, 1)
    assert grown.shape == (196,) and torch.allclose(grown, torch.full_like(grown, 0.25))
    # one variable of a 14x14 space moves a blob of pixels: D(e_i) is nonnegative, local, nonzero
    blob = space.basis(torch.tensor([0]), 1, torch.float32)[0]
    assert blob.min() >= 0 and 0 < int((blob > 0).sum()) <= 16


def test_hierarchical_schedule_switches_at_the_stated_steps():
    opt = l2l.make_optimizer("zoo_adam", batch=64, attack_sizes=((7, 7), (14, 14), (28, 28)), grow_at=(3, 6))
    task = l2l.tasks.AttackTask(torch.nn.Flatten(), torch.rand(1, 28, 28), label=0)  # cheap stand-in model
    oracle, state = Oracle(task), opt.init(task.x0(), seed=0)
    sizes, costs = [], []
    for _ in range(8):
        costs.append(opt.next_step_queries(state, task.dim))
        spent = oracle.queries
        state = opt.step(state, oracle)
        assert oracle.queries - spent == costs[-1]
        sizes.append(state.slots["y"].numel())
    assert sizes == [49] * 3 + [196] * 3 + [784] * 2
    assert costs == [2 * 49 + 1] * 3 + [2 * 64 + 1] * 5
    assert opt.queries_per_step(784) == 2 * 64 + 1


def test_importance_sampling_follows_max_pooled_perturbation_magnitudes():
    space = AttackSpace.build(784, (), (), None)  # the task's own 28x28 pixels, 3x3 regions
    assert space.importance(torch.zeros(784), 0) is None  # nothing changed yet: uniform sampling
    y = torch.zeros(1, 28, 28)
    y[0, 4, 4] = -0.3  # one changed pixel lights up its whole 3x3 region (rows/cols 3..5)
    probs = space.importance(y.flatten(), 0).view(28, 28)
    assert torch.isclose(probs.sum(), torch.tensor(1.0))
    floor = IMPORTANCE_FLOOR / 784
    assert torch.allclose(probs[3:6, 3:6], torch.full((3, 3), (1 - IMPORTANCE_FLOOR) / 9 + floor))
    assert torch.isclose(probs[0, 0], torch.tensor(floor)) and torch.isclose(
        probs[20, 20], torch.tensor(floor)
    )
    opt = l2l.make_optimizer("zoo_adam", importance=True, batch=9)
    state = opt.init(torch.zeros(784), seed=0)
    state.slots["y"] = y.flatten()
    picked = opt._pick_coordinates(state, state.slots["space"])
    assert len(set(picked.tolist())) == 9  # B distinct coordinates, mostly from the marked region
    assert sum(1 for i in picked.tolist() if 3 <= i // 28 <= 5 and 3 <= i % 28 <= 5) >= 7


# --- optimizer behaviour ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("zoo_adam", {"lr": 0.2, "batch": 5}),
        (
            "zoo_adam",
            {
                "lr": 0.2,
                "batch": 3,
                "attack_sizes": ((2, 2), (4, 4)),
                "grow_at": (4,),
                "image_shape": (1, 4, 4),
                "importance": True,
            },
        ),
        ("zoo_newton", {"lr": 1.0, "batch": 5}),
        ("zo_ead", {"delta": 2.0, "q": 5, "mu": 1e-3}),
        ("fo_ead", {"delta": 20.0}),
        ("fo_pgd", {"delta": 20.0}),
        ("fo_pgd", {"delta": 5.0, "sign": True}),
    ],
)
def test_iterates_and_queries_stay_in_the_box(name, settings):
    task = BoxTask()
    opt = l2l.make_optimizer(name, **settings)
    oracle, state = Oracle(task), opt.init(task.x0(), seed=1)
    for _ in range(12):
        state = opt.step(state, oracle)
        assert in_box(state.x), (name, state.step)
    if name != "zo_ead":  # its Gaussian queries x + mu u (l2l.estimators) may reach mu past the box
        assert all(in_box(rows) for rows in task.queried)
    # the box binds (the target lies outside it), and the optimizer went there
    f_start, f_end = task.loss(task.x0())[0], task.loss(state.x)[0]
    assert f_end < f_start - 1.0


@pytest.mark.parametrize("name", NEW)
def test_every_optimizer_lowers_a_quadratic(name, quadratic_task):
    traj = l2l.run(l2l.make_optimizer(name, **QUADRATIC_SETTINGS[name]), quadratic_task, steps=60, seed=0)
    assert traj.losses[0] > 0.9
    assert traj.final_loss < 0.5 * traj.losses[0]


@pytest.mark.parametrize("name", NEW)
def test_every_optimizer_lowers_an_mnist_attack_loss(name, mnist_family):
    task = mnist_family.instance("val", 0)
    traj = l2l.run(l2l.make_optimizer(name, **ATTACK_SETTINGS[name]), task, steps=30, seed=0)
    assert traj.final_loss < traj.losses[0] - 1.0


@pytest.mark.parametrize(
    ("name", "settings", "per_step"),
    [
        ("zoo_adam", {"batch": 4}, 9),
        ("zoo_newton", {"batch": 128}, 21),  # B is capped at d = 10
        ("zo_ead", {"q": 7}, 8),
        ("zo_ead", {"q": 7, "estimator": "antithetic"}, 14),
        ("fo_ead", {}, 1),
        ("fo_pgd", {}, 1),
    ],
)
def test_query_counts_match_the_arithmetic(name, settings, per_step, quadratic_task):
    opt = l2l.make_optimizer(name, **settings)
    traj = l2l.run(opt, quadratic_task, steps=6, seed=0)  # run() also checks next_step_queries
    assert traj.queries == [k * per_step for k in range(7)]
    assert opt.queries_per_step(quadratic_task.dim) == per_step
    cut = l2l.run(opt, quadratic_task, steps=6, budget=3 * per_step + per_step - 1, seed=0)
    assert cut.queries[-1] == 3 * per_step and cut.steps == 3  # stops cleanly before the budget


def test_hierarchical_query_counts_in_a_run():
    task = BoxTask()
    opt = l2l.make_optimizer(
        "zoo_adam", batch=6, attack_sizes=((2, 2), (4, 4)), grow_at=(2,), image_shape=(1, 4, 4)
    )
    traj = l2l.run(opt, task, steps=4, seed=0)
    assert [b - a for a, b in zip(traj.queries, traj.queries[1:], strict=False)] == [9, 9, 13, 13]


def test_adam_state_resets_at_first_success_and_on_schedule(quadratic_task):
    calls = []

    def success(x: torch.Tensor) -> bool:
        calls.append(x.clone())
        return float(quadratic_task.loss(x)[0]) < 0.8

    opt = l2l.make_optimizer("zoo_adam", lr=0.05, success_fn=success, reset_at=(2,))
    oracle, state = Oracle(quadratic_task), opt.init(quadratic_task.x0(), seed=0)
    first = None
    for _ in range(30):
        if first is None and float(quadratic_task.loss(state.x)[0]) < 0.8:
            first = state.step
        state = opt.step(state, oracle)
    assert first is not None and first > 2
    assert state.slots["resets"] == [2, first]  # the schedule, then the first success only
    assert len(calls) == first + 1  # success is no longer checked once it has happened
    assert "success_fn" not in opt.config()


def test_success_callback_reads_the_task():
    task = l2l.tasks.AttackTask(torch.nn.Flatten(), torch.full((1, 2, 2), 0.5), label=3)
    # logits are the pixels: no class dominates at 0.5, and a +0.4 on pixel 0 makes class 0 the top one
    fooled = success_callback(task)
    assert fooled(torch.tensor([0.4, 0.0, 0.0, 0.0])) and not fooled(torch.tensor([0.0, 0.0, 0.0, 0.4]))
    with pytest.raises(ValueError, match="defines no success"):
        success_callback(BoxTask())


def test_white_box_flags():
    assert {n: l2l.make_optimizer(n).white_box for n in NEW} == {
        "zoo_adam": False,
        "zoo_newton": False,
        "zo_ead": False,
        "fo_ead": True,
        "fo_pgd": True,
    }
    assert "white_box" not in l2l.make_optimizer("fo_pgd").config()


def test_white_box_references_count_their_gradient_calls(quadratic_task):
    oracle = Oracle(quadratic_task)
    opt = l2l.make_optimizer("fo_ead")
    state = opt.init(quadratic_task.x0())
    for _ in range(3):
        state = opt.step(state, oracle)
    assert oracle.white_box_calls == oracle.queries == 3


def test_zoo_base_query_is_the_iterate_bit_for_bit():
    task = BoxTask()
    opt = l2l.make_optimizer("zoo_adam", lr=0.2, batch=5)
    assert opt.evaluates_iterate and not l2l.make_optimizer("zo_ead").evaluates_iterate
    assert not l2l.make_optimizer("zoo_adam", attack_sizes=((2, 2), (4, 4)), grow_at=(3,)).evaluates_iterate
    oracle, state = Oracle(task), opt.init(task.x0(), seed=0)
    for _ in range(5):
        x = state.x.clone()
        state = opt.step(state, oracle)
        assert torch.equal(task.queried[-1][0], x) and torch.equal(state.fx, task.loss(x)[0])


def test_fo_pgd_takes_sign_steps_on_linf_tasks():
    torch.manual_seed(0)  # a linear classifier: its margin has a dense gradient
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    image = torch.full((1, 2, 2), 0.5)
    linf = l2l.tasks.AttackTask(model, image, label=1, eps=0.1)
    plain = l2l.tasks.AttackTask(model, image, label=1)
    auto = l2l.make_optimizer("fo_pgd", delta=0.2)  # step 0.2 / d = 0.05
    on_ball = auto.step(auto.init(linf.x0()), Oracle(linf)).x
    assert torch.allclose(on_ball.abs(), torch.full((4,), 0.05))  # a sign step, inside the eps ball
    free = auto.step(auto.init(plain.x0()), Oracle(plain)).x
    assert not torch.allclose(free.abs(), torch.full((4,), 0.05))  # a gradient step
    forced = l2l.make_optimizer("fo_pgd", delta=0.2, sign=True)
    assert torch.allclose(forced.step(forced.init(plain.x0()), Oracle(plain)).x.abs(), torch.full((4,), 0.05))


def test_fista_square_root_step_decay():
    opt = l2l.make_optimizer("zo_ead", delta=4.0, decay_steps=4)
    steps = [opt.step_size(k, dim=4) for k in range(6)]
    assert steps == pytest.approx([1.0, 0.75**0.5, 0.5**0.5, 0.5, 0.0, 0.0])
    assert l2l.make_optimizer("zo_ead", delta=4.0).step_size(100, dim=4) == 1.0


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: l2l.make_optimizer("zoo_adam", batch=0), ValueError, "batch=0"),
        (lambda: l2l.make_optimizer("zoo_newton", h=0.0), ValueError, "h=0.0"),
        (lambda: l2l.make_optimizer("zoo_newton", h=-1e-4), ValueError, "h=-0.0001"),
        (lambda: l2l.make_optimizer("zoo_adam", lr=0.0), ValueError, "lr=0.0"),
        (lambda: l2l.make_optimizer("zoo_adam", beta2=1.0), ValueError, "beta2=1.0"),
        (lambda: l2l.make_optimizer("zoo_newton", min_hessian=0.0), ValueError, "min_hessian=0.0"),
        (lambda: l2l.make_optimizer("zoo_adam", attack_sizes=((14, 0),)), ValueError, r"\(14, 0\)"),
        (lambda: l2l.make_optimizer("zoo_adam", attack_sizes=((7, 7), (14, 14))), ValueError, "grow_at=()"),
        (
            lambda: l2l.make_optimizer("zoo_adam", attack_sizes=((7, 7), (14, 14), (28, 28)), grow_at=(9, 4)),
            ValueError,
            "strictly increasing",
        ),
        (
            lambda: l2l.make_optimizer("zoo_adam", image_shape=(1, 28, 27)).init(torch.zeros(784)),
            ValueError,
            r"image_shape=\(1, 28, 27\).*d=784",
        ),
        (
            lambda: l2l.make_optimizer("zoo_adam", attack_sizes=((5, 5),)).init(torch.zeros(100)),
            ValueError,
            "needs the image shape of this d=100",
        ),
        (
            lambda: l2l.make_optimizer("zoo_adam", attack_sizes=((32, 32),)).init(torch.zeros(784)),
            ValueError,
            "larger than the image",
        ),
        (lambda: l2l.make_optimizer("zo_ead", beta=-1.0), ValueError, "beta=-1.0"),
        (lambda: l2l.make_optimizer("zo_ead", q=0), ValueError, "q=0"),
        (lambda: l2l.make_optimizer("fo_ead", decay_steps=0), ValueError, "decay_steps=0"),
        (lambda: l2l.make_optimizer("fo_pgd", delta=0.0), ValueError, "delta=0.0"),
        (lambda: l2l.make_optimizer("zoo_adam", q=20), TypeError, r"no parameter\(s\) \['q'\]"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
