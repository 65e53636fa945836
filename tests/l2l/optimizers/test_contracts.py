"""Contracts that every registry entry keeps, checked for every registered optimizer and task family.

The parameter lists are read from the registries at import time (as stable-baselines3 parametrizes its
tests over algorithms), so a newly registered optimizer or family is covered without editing this file.

Optimizers: announced queries equal spent queries, the same seed gives the same trajectory bit for bit,
the budget stop holds, every iterate is feasible on a norm-ball task, and ``config()`` rebuilds the
optimizer. Each runs on the cheapest task that offers the capabilities it declares (``requires``).
Families: disjoint splits, ``loss`` of shape [B], a feasible x0, a positive ``default_steps`` and
capabilities consistent with the task. Learned optimizers: save -> load -> step gives the same
trajectory, for the shipped checkpoints and for a freshly built one of every registered learned
optimizer (``l2l.learned.learned_names()``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from functools import cache
from pathlib import Path

import pytest
import torch

import l2l
from l2l.common.paths import checkpoints_dir
from l2l.learned import LearnedOptimizer, learned_class, learned_names, save_learned
from l2l.optimizers import accepted_params
from l2l.optimizers.core.base import CAPABILITIES, ZOOptimizer, ZOState, task_capabilities
from l2l.oracle import Oracle
from l2l.tasks.base import NORMS, SPLITS, Task, TaskFamily
from l2l.tasks.registry import family_splits

OPTIMIZERS = l2l.optimizer_names()
FAMILIES = l2l.family_names()
#: the families as parameters: a test-only track (ImageNet: a 4.7 M-parameter model, d = 150,528) is slow
FAMILY_PARAMS = [
    pytest.param(name, marks=pytest.mark.slow) if family_splits(name) != SPLITS else name for name in FAMILIES
]

#: small settings for whichever of them an optimizer has (few directions, short epochs, a weak transfer
#: start that leaves the search something to do, one weak surrogate: P-RGF's prior from the others is so
#: good that lambda = 1 at every step, and then its random draws change nothing), so cases stay fast
CHEAP = {"q": 3, "batch": 4, "q0": 6, "epoch": 2, "pgd_steps": 1, "pgd_step": 0.05, "surrogates": "mlp"}
#: steps per contract run: enough for an epoch boundary (zo_szvrg) and a few recurrent updates
STEPS = 5
#: steps of the reproducibility runs, long enough for float differences to compound
REPRO_STEPS = 40
#: instances per split when a family takes ``sizes``
SMALL_SIZES = (3, 2, 2)
#: candidate tasks, cheapest first: (family, constructor kwargs); an optimizer gets the first one that
#: offers every capability it requires (and a ball norm it searches)
TASK_CANDIDATES = (
    ("quadratic", {}),
    ("mnist_attack_linf", {"sizes": SMALL_SIZES}),
    ("mnist_attack_l2", {"sizes": SMALL_SIZES}),
)
FEASIBILITY_TOL = 1e-6
#: the largest task dimension every optimizer is run on in the ball contract
MAX_CONTRACT_DIM = 10_000


def cheap_optimizer(name: str, **extra: float) -> ZOOptimizer:
    """Optimizer ``name`` with class defaults, :data:`CHEAP` settings and ``extra`` where it has them."""
    return l2l.make_optimizer(name, **accepted_params(name, {**CHEAP, **extra}))


def small_family(name: str) -> TaskFamily:
    """Family ``name`` with :data:`SMALL_SIZES` splits where its constructor takes ``sizes``."""
    try:
        return l2l.make_family(name, sizes=SMALL_SIZES)
    except TypeError as err:
        if "sizes" not in str(err):
            raise
        return l2l.make_family(name)


@cache
def candidate_task(index: int) -> Task:
    """Val instance 0 of ``TASK_CANDIDATES[index]``, built once per session."""
    family, kwargs = TASK_CANDIDATES[index]
    return l2l.make_family(family, **kwargs).instance("val", 0)


def searches_ball_of(cls: type[ZOOptimizer], task: Task) -> bool:
    """Whether optimizer class ``cls`` accepts ``task``'s ball norm.

    Methods that search only some norms say so in a ``norms`` class attribute (as the score-based
    attacks of ``l2l.optimizers.core.search_attack`` do); the others accept every norm.
    """
    norms = getattr(cls, "norms", NORMS)
    return task.ball is None or task.ball.norm in norms


def task_for(name: str) -> Task:
    """The cheapest candidate task that offers every capability optimizer ``name`` requires."""
    return task_for_class(l2l.optimizers.optimizer_class(name))


def task_for_class(cls: type[ZOOptimizer]) -> Task:
    """The cheapest candidate task that offers every capability optimizer class ``cls`` requires."""
    needs = set(cls.requires)
    unknown = needs - set(CAPABILITIES)
    assert not unknown, f"{cls.__name__} requires undeclared capabilities {sorted(unknown)}; add them"
    for index in range(len(TASK_CANDIDATES)):
        task = candidate_task(index)
        if needs <= task_capabilities(task) and searches_ball_of(cls, task):
            return task
    raise AssertionError(f"no task in TASK_CANDIDATES offers {sorted(needs)} for {cls.__name__}; add one")


class Recorder(ZOOptimizer):
    """Wraps an optimizer to record, per step, the queries it announced and spent and the iterate.

    A ``ZOOptimizer`` itself, so ``l2l.run`` treats it as the optimizer it wraps (same name, required
    capabilities and costs). ``announced`` also holds the announcement of a step that ``l2l.run``
    then refused (the budget stop); ``drew_random`` says whether a step drew from ``state.rng``.

    Args:
        inner: the optimizer under test.
    """

    def __init__(self, inner: ZOOptimizer):
        self.inner = inner
        self.name, self.requires, self.white_box = inner.name, inner.requires, inner.white_box
        self.announced: list[int] = []
        self.spent: list[int] = []
        self.iterates: list[torch.Tensor] = []
        #: whether any step drew from the run's generator ``state.rng``
        self.drew_random = False

    def init(self, x0: torch.Tensor, seed: int = 0) -> ZOState:
        return self.inner.init(x0, seed=seed)

    def queries_per_step(self, dim: int) -> int:
        return self.inner.queries_per_step(dim)

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        cost = self.inner.next_step_queries(state, dim)
        self.announced.append(cost)
        return cost

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        before, rng_before = oracle.queries, state.rng.get_state()
        state = self.inner.step(state, oracle)
        self.spent.append(oracle.queries - before)
        self.iterates.append(state.x.detach().clone())
        self.drew_random |= not torch.equal(state.rng.get_state(), rng_before)
        return state

    @property
    def evaluates_iterate(self) -> bool:
        return self.inner.evaluates_iterate

    def config(self) -> dict:
        return self.inner.config()


def same_trajectory(a: l2l.Trajectory, b: l2l.Trajectory) -> bool:
    """Whether two runs agree bit for bit: every loss, every query count and the final iterate."""
    return a.losses == b.losses and a.queries == b.queries and torch.equal(a.x, b.x)


# --- optimizers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_announced_queries_are_the_queries_spent(name):
    task, rec = task_for(name), Recorder(cheap_optimizer(name))
    traj = l2l.run(rec, task, steps=STEPS, seed=0)
    assert traj.steps == STEPS
    # run() announces one step more than it takes only when it stops early; here it takes them all
    assert rec.announced == rec.spent, (name, rec.announced, rec.spent)
    assert [b - a for a, b in zip(traj.queries, traj.queries[1:], strict=False)] == rec.spent


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_same_seed_gives_the_same_trajectory_bit_for_bit(name):
    task, rec = task_for(name), Recorder(cheap_optimizer(name))
    a = l2l.run(rec, task, steps=REPRO_STEPS, seed=11)
    b = l2l.run(cheap_optimizer(name), task, steps=REPRO_STEPS, seed=11)  # a fresh instance: no hidden state
    assert same_trajectory(a, b)
    assert all(math.isfinite(v) for v in a.losses)
    if rec.drew_random:  # then the seed must matter: another one draws other directions
        assert l2l.run(cheap_optimizer(name), task, steps=REPRO_STEPS, seed=12).losses != a.losses


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_budget_stop_holds(name):
    task = task_for(name)
    full = l2l.run(cheap_optimizer(name), task, steps=3, seed=2)
    budget = full.queries[3] - 1  # one query short of the third step
    rec = Recorder(cheap_optimizer(name))
    cut = l2l.run(rec, task, steps=10, budget=budget, seed=2)
    assert cut.queries[-1] <= budget
    assert cut.steps < 10 and len(rec.announced) == cut.steps + 1
    assert cut.queries[-1] + rec.announced[-1] > budget  # it stopped before the step that would exceed
    assert rec.spent == rec.announced[:-1]
    nothing = l2l.run(cheap_optimizer(name), task, steps=5, budget=0, seed=2)
    assert nothing.queries == [0] and nothing.steps == 0


@pytest.fixture(scope="module")
def ball_tasks() -> list[Task]:
    """A val instance of every registered family whose tasks carry a norm ball."""
    tasks = []
    for name in FAMILIES:
        if family_splits(name) != SPLITS:
            continue  # a test-only track's model is too big for every optimizer's contract run
        task = contract_instance(name, 1)
        if task.ball is not None and task.dim <= MAX_CONTRACT_DIM:  # CMA-ES keeps a full d x d covariance
            tasks.append(task)
    assert {task.ball.norm for task in tasks} == set(NORMS), "every ball norm needs a family to test on"
    return tasks


def assert_feasible(task: Task, x: torch.Tensor, what: str) -> None:
    """``x`` equals its own projection, lies in the task's norm ball and keeps the image in [0, 1]."""
    assert torch.allclose(task.project(x), x, rtol=0.0, atol=FEASIBILITY_TOL), what
    ord = math.inf if task.ball.norm == "linf" else 2
    assert torch.linalg.vector_norm(x, ord=ord) <= task.ball.eps * (1 + 1e-6) + FEASIBILITY_TOL, what
    if task.perturbs_image:  # the attacked image stays in the image box too
        image = task.image.flatten() + x
        assert image.min() >= -FEASIBILITY_TOL and image.max() <= 1 + FEASIBILITY_TOL, what


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_iterate_is_feasible_on_a_ball_task(name, ball_tasks):
    # a huge step size where the optimizer has one, so that the projection has work to do
    big = accepted_params(name, {"delta": 1000.0})
    cls = l2l.optimizers.optimizer_class(name)
    tasks = [t for t in ball_tasks if searches_ball_of(cls, t) and set(cls.requires) <= task_capabilities(t)]
    assert tasks, f"{name} searches none of the ball norms {NORMS}"
    for task in tasks:
        rec = Recorder(cheap_optimizer(name, **big))
        l2l.run(rec, task, steps=4, seed=0)
        assert len(rec.iterates) == 4
        for k, x in enumerate(rec.iterates):
            assert_feasible(task, x, f"{name} on {task.family}, step {k + 1}")
        if type(task).differentiable_loss is not Task.differentiable_loss:
            # a piecewise-constant black-box loss (the order attack's -tau_S): small finite differences
            # see no change, so not moving in 4 steps is right; feasibility is all there is to check
            continue
        assert rec.iterates[-1].abs().max() > 0, f"{name} never moved on {task.family}"
        if big:  # the step overshoots the ball, so the projection must have bound it
            ord = math.inf if task.ball.norm == "linf" else 2
            assert torch.linalg.vector_norm(rec.iterates[-1], ord=ord) > 0.5 * task.ball.eps


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_config_round_trips_through_make_optimizer(name):
    opt = cheap_optimizer(name)
    config = json.loads(json.dumps(opt.config()))  # JSON-friendly
    rebuilt = l2l.make_optimizer(name, **config)
    assert type(rebuilt) is type(opt) and rebuilt.config() == opt.config()
    task = task_for(name)
    assert same_trajectory(l2l.run(opt, task, steps=3, seed=4), l2l.run(rebuilt, task, steps=3, seed=4))


# --- task families ---------------------------------------------------------------------------------


@cache
def family(name: str) -> TaskFamily:
    """The small family ``name`` (see :func:`small_family`), built once per session."""
    return small_family(name)


def contract_instance(name: str, index: int = 0) -> Task:
    """Instance ``index`` (or the last one) of family ``name``'s val split, or of its first split for a
    test-only family."""
    fam = family(name)
    split = "val" if "val" in fam.splits else fam.splits[0]
    return fam.instance(split, min(index, fam.split_size(split) - 1))


def probe_points(task: Task, n: int = 2) -> torch.Tensor:
    """x0 and ``n`` fixed feasible points near it, [n + 1, d] (the same for every instance of a dim)."""
    g = torch.Generator().manual_seed(1234)
    x0 = task.x0()
    rows = [task.project(x0 + 0.05 * torch.randn(task.dim, generator=g)) for _ in range(n)]
    return torch.stack([x0, *rows])


def fingerprint(task: Task) -> tuple[float, ...]:
    """The full-objective losses at :func:`probe_points`: equal for two instances only if they are one."""
    with torch.no_grad():
        return (task.dim, *task.loss(probe_points(task)).tolist())


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_splits_are_disjoint(name):
    fam = family(name)
    instances = {split: fam.instances(split) for split in fam.splits}
    assert all(instances.values()), f"{name} has an empty split"
    prints = {split: {fingerprint(t) for t in tasks} for split, tasks in instances.items()}
    described = {
        split: {json.dumps(t.describe(), sort_keys=True) for t in ts} for split, ts in instances.items()
    }
    identifying = sum(map(len, described.values())) == sum(map(len, instances.values()))
    for a, b in itertools.combinations(fam.splits, 2):
        assert not prints[a] & prints[b], f"{name}: {a} and {b} share an instance"
        if identifying:  # descriptions that tell instances apart (image ids, ...) must not repeat
            assert not described[a] & described[b], f"{name}: {a} and {b} share {described[a] & described[b]}"


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_loss_has_one_value_per_row(name):
    task = contract_instance(name)
    X = probe_points(task, n=3)
    for rows in (X, X[:1]):
        loss = task.loss(rows)
        assert loss.shape == (rows.shape[0],) and torch.isfinite(loss).all()
    batch = task.sample_batch(torch.Generator().manual_seed(0))
    assert task.loss(X, batch).shape == (4,)
    loss, success = task.loss_and_success(X)
    assert torch.allclose(loss, task.loss(X)) and (success is None or success.shape == (4,))


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_x0_is_a_feasible_vector(name):
    task = contract_instance(name)
    x0 = task.x0()
    assert x0.shape == (task.dim,) and x0.dtype == torch.float32
    assert torch.equal(task.project(x0), x0)
    x0.add_(1.0)
    assert not torch.equal(task.x0(), x0)  # a fresh copy on every call


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_default_steps_is_a_positive_int(name):
    steps = type(family(name)).default_steps
    assert isinstance(steps, int) and not isinstance(steps, bool) and steps > 0


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_declared_capabilities_are_consistent(name):
    task = contract_instance(name)
    if task.image_shape is not None:
        assert math.prod(task.image_shape) == task.dim
    if task.ball is not None:  # project enforces the ball, whatever it is given
        far = 10.0 * torch.randn(task.dim, generator=torch.Generator().manual_seed(0))
        ord = math.inf if task.ball.norm == "linf" else 2
        assert torch.linalg.vector_norm(task.project(far), ord=ord) <= task.ball.eps * (1 + 1e-6)
    if "likelihood" in task_capabilities(task):
        X = probe_points(task)
        loss, log_p = task.loss_and_log_likelihood(X)
        assert torch.allclose(loss, task.loss(X)) and log_p.shape == (3,) and (log_p <= 1e-6).all()
    assert task.perturbs_image or not task.classifier_attack  # a classifier attack perturbs an image
    if task.perturbs_image:
        adv = task.adversarial(probe_points(task))
        assert adv.shape == (3, *task.image_shape) and adv.min() >= 0 and adv.max() <= 1
        assert task.image.shape == task.image_shape


# --- learned optimizers ----------------------------------------------------------------------------


LEARNED = learned_names()


def fresh_learned(name: str, path: Path) -> LearnedOptimizer:
    """A freshly built learned optimizer ``name`` (cheap options, perturbed weights), saved to ``path``.

    The weights are moved off any initialisation, so that only a file that carries them reproduces the
    trajectory (rebuilding from the options alone would not).
    """
    config_class = learned_class(name).config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    opt = config_class(**{k: v for k, v in CHEAP.items() if k in fields}, seed=5).new_optimizer()
    noise = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in opt.modules().values():
            for p in module.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=noise))
    save_learned(path, opt, task={"family": "quadratic"})
    return opt


def shipped_optimizer_files() -> list[Path]:
    """The shipped ``.pt`` optimizers: the files with a format marker (a target model has none)."""
    files = sorted(checkpoints_dir().glob("*.pt"))
    return [p for p in files if "format" in torch.load(p, map_location="cpu", weights_only=True)]


def contract_task(cls: type[ZOOptimizer]) -> Task:
    """The task a learned optimizer steps on before and after a save: the quadratic, or the cheapest
    candidate with what it requires (an attack for a search attack)."""
    if cls.requires or getattr(cls, "norms", None):
        return task_for_class(cls)
    return l2l.make_task("quadratic", split="val", index=1)


@pytest.mark.parametrize("name", LEARNED)
def test_fresh_learned_optimizer_steps_the_same_after_save_and_load(name, tmp_path):
    path = tmp_path / f"{name}.pt"
    opt = fresh_learned(name, path)
    loaded = l2l.load_optimizer(path)
    assert isinstance(opt, type(loaded)) and loaded.config() == opt.config()
    task = contract_task(type(opt))
    assert same_trajectory(
        l2l.run(opt, task, steps=STEPS, seed=3), l2l.run(loaded, task, steps=STEPS, seed=3)
    )


@pytest.mark.parametrize("path", shipped_optimizer_files(), ids=lambda p: p.name)
def test_shipped_checkpoint_steps_the_same_after_save_and_load(path, tmp_path):
    opt = l2l.load_optimizer(path)
    assert isinstance(opt, LearnedOptimizer), f"{path.name} loads a {type(opt).__name__}, not a learned one"
    copy = tmp_path / path.name
    save_learned(copy, opt)
    task = contract_task(type(opt))
    assert same_trajectory(
        l2l.run(opt, task, steps=STEPS, seed=3), l2l.run(l2l.load_optimizer(copy), task, steps=STEPS, seed=3)
    )
