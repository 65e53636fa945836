"""Square, SignHunter and Parsimonious: query costs, schedules, dyadic flips, feasibility, seeds, success."""

from __future__ import annotations

import itertools

import pytest
import torch
from tqdm import tqdm

import l2l
from eval import attack_table, tune
from l2l.optimizers.core.search_attack import AttackGeometry
from l2l.optimizers.parsimonious import Parsimonious, block_grid
from l2l.optimizers.signhunter import SignHunter, dyadic_chunks, top_level
from l2l.optimizers.square import (
    Square,
    l2_candidate,
    l2_square_side,
    pseudo_gaussian_square,
    square_fraction,
    square_side,
)
from l2l.oracle import Oracle
from l2l.run import run
from l2l.tasks.base import NormBall

METHODS = ["square", "signhunter", "parsimonious"]


@pytest.fixture(scope="module")
def linf_tasks():
    return l2l.make_family("mnist_attack_linf", eps=0.3, sizes=(1, 3, None)).instances("val")


@pytest.fixture(scope="module")
def l2_tasks():
    return l2l.make_family("mnist_attack_l2", sizes=(1, 3, None)).instances("val")


def toy_geometry(shape: tuple[int, int, int], eps: float = 0.5) -> AttackGeometry:
    """A geometry without an image box: the projection is the L-inf clamp alone."""
    return AttackGeometry(shape, NormBall("linf", eps), lambda x: x.clamp(-eps, eps))


def drive(search, losses):
    """The candidates ``search`` proposes when told ``losses(candidate, n)``, until ``losses`` says None."""
    out = [next(search)]
    while (value := losses(out[-1], len(out))) is not None:
        out.append(search.send(torch.tensor(value)))
    return out


def test_square_fraction_halves_at_the_rescaled_breakpoints():
    assert square_fraction(0.8, 0, 10_000) == 0.8
    assert square_fraction(0.8, 10, 10_000) == 0.8 and square_fraction(0.8, 11, 10_000) == 0.4
    assert square_fraction(0.8, 50, 10_000) == 0.4 and square_fraction(0.8, 51, 10_000) == 0.2
    assert square_fraction(0.8, 8001, 10_000) == 0.8 / 512
    assert square_fraction(0.8, 20_000, 10_000) == 0.8 / 512  # no jump back to p_init
    # a 2000-query schedule: iteration i counts as 5 i
    assert square_fraction(0.8, 2, 2000) == 0.8 and square_fraction(0.8, 3, 2000) == 0.4
    assert square_fraction(0.8, 1601, 2000) == 0.8 / 512


def test_square_sides_follow_the_formula():
    assert square_side(0.8, 28, 28) == 25  # round(sqrt(0.8 * 784)) = round(25.04)
    assert square_side(0.8 / 512, 28, 28) == 1
    assert square_side(1.0, 10, 40) == 10  # capped to fit the image
    assert [l2_square_side(p, 28, 28) for p in (0.8, 0.1, 0.001)] == [25, 9, 3]  # odd, >= 3
    assert l2_square_side(1.0, 28, 28) == 27


def test_square_candidates_change_one_square_of_the_scheduled_side(linf_tasks):
    task = linf_tasks[0]
    opt = Square(p_init=0.3, schedule_budget=100)
    oracle = Oracle(task)
    search = opt.search(opt.init(task.x0(), seed=0), opt.geometry(oracle))
    cands = drive(search, lambda c, n: (1.0 if n == 1 else 2.0) if n < 60 else None)  # reject every move
    start = cands[0].view(28, 28)
    assert torch.all((start >= 0).all(0) | (start <= 0).all(0))  # vertical stripes (then the box clamp)
    for i, cand in enumerate(cands[1:]):
        rows, cols = torch.nonzero(cand.view(28, 28) != start, as_tuple=True)
        side = square_side(square_fraction(0.3, i, 100), 28, 28)
        # the stripes differ from the new sign on whole columns of the square, so its rows all change
        assert int(rows.max() - rows.min()) + 1 == side
        assert int(cols.max() - cols.min()) + 1 <= side


def test_l2_candidate_keeps_the_norm_at_eps():
    eps = 2.0
    geometry = AttackGeometry((2, 12, 12), NormBall("l2", eps), lambda x: x)
    rng = torch.Generator().manual_seed(0)
    best = torch.randn(2 * 12 * 12, generator=rng)
    best = best * (eps / best.norm())
    for side in (3, 5, 11):
        cand = l2_candidate(best, side, geometry, rng)
        assert cand.norm() == pytest.approx(eps, rel=1e-5)
        assert not torch.equal(cand, best)
    square = pseudo_gaussian_square(5, rng)
    assert square.norm() == pytest.approx(1.0, rel=1e-6) and (square > 0).sum() == (square < 0).sum() - 5


def test_dyadic_chunks_cover_every_coordinate_once():
    assert top_level(784) == 10 and top_level(1024) == 10 and top_level(1) == 0
    for level in range(top_level(784) + 1):
        chunks = dyadic_chunks(784, level)
        covered = torch.cat([torch.arange(784)[c] for c in chunks])
        assert torch.equal(covered, torch.arange(784))
        assert len(chunks) <= 2**level and {c.stop - c.start for c in chunks[:-1]} <= {-(-784 // 2**level)}
    assert len(dyadic_chunks(784, 10)) == 784
    with pytest.raises(ValueError, match="level=11"):
        dyadic_chunks(784, 11)


def test_signhunter_flips_chunk_j_of_level_i_then_restarts():
    geometry = toy_geometry((1, 3, 5))  # d = 15: levels 0 .. 4, 1 + 2 + 4 + 8 + 15 flips a round
    opt = SignHunter()
    search = opt.search(opt.init(torch.zeros(15), seed=0), geometry)
    cands = drive(search, lambda c, n: (1.0 if n == 1 else 2.0) if n <= 31 else None)  # reject every flip
    assert torch.all(cands[0] == 0.5)
    expected = [c for level in range(5) for c in dyadic_chunks(15, level)] + [slice(0, 15)]
    assert len(cands) - 1 == len(expected) == 31
    for cand, chunk in zip(cands[1:], expected, strict=True):
        flipped = torch.zeros(15, dtype=torch.bool)
        flipped[chunk] = True
        assert torch.equal(cand < 0, flipped)


def test_signhunter_keeps_a_flip_only_when_the_loss_falls():
    opt = SignHunter()
    search = opt.search(opt.init(torch.zeros(8), seed=0), toy_geometry((1, 2, 4)))
    # losses: start 5, level 0 (flip all) 6: revert; level 1 chunk 0 4: keep; chunk 1 4: tie, revert
    cands = drive(search, lambda c, n: [5.0, 6.0, 4.0, 4.0][n - 1] if n <= 4 else None)
    # signs now - - - - + + + +; level 2 flips chunk 0 = coordinates 0, 1
    assert torch.equal(cands[-1] < 0, torch.tensor([False] * 2 + [True] * 2 + [False] * 4))


def test_parsimonious_lazy_greedy_inserts_the_positive_blocks_by_gain():
    geometry = toy_geometry((1, 4, 4))
    blocks = block_grid((1, 4, 4), 2)
    weights = [3.0, -1.0, 2.0, 0.5]  # loss falls by w_b when block b sits at +eps

    def loss(cand, n):
        if n > 11:
            return None
        signs = cand.view(1, 4, 4) > 0
        return 10.0 - sum(w * float(signs[b].all()) for w, b in zip(weights, blocks, strict=True))

    opt = Parsimonious(block_size=2)
    cands = drive(opt.search(opt.init(torch.zeros(16), seed=0), geometry), loss)
    assert torch.all(cands[0] == -0.5)
    # insertion: 4 fresh gains, then 3 flips, each but the first after a re-evaluation, and a final
    # re-evaluation of the stale block 1 (gain -1 < 0) ends it: 4 + 3 = 7 queries; deletion: 3 fresh
    # gains, none positive. The pass ends after 1 + 10 queries; the 12th flips a single pixel.
    current = cands[0].clone().view(1, 4, 4)
    for b in (blocks[0], blocks[2], blocks[3]):
        current[b] = 0.5
    assert sorted(loss(c, 0) for c in cands[8:11]) == [5.0, 6.5, 7.5]  # deletion trials of the 3 members
    assert int((cands[11].view(1, 4, 4) != current).sum()) == 1


@pytest.mark.parametrize("name", METHODS)
def test_every_step_costs_one_query_start_included(name, linf_tasks):
    opt = l2l.make_optimizer(name)
    task = linf_tasks[0]
    oracle = Oracle(task)
    state = opt.init(task.x0(), seed=0)
    for _ in range(30):
        before = oracle.queries
        assert opt.next_step_queries(state, task.dim) == 1 == opt.queries_per_step(task.dim)
        state = opt.step(state, oracle)
        assert oracle.queries - before == 1
    traj = run(opt, task, steps=1000, budget=37, seed=1)
    assert traj.queries == list(range(38)) and opt.evaluates_iterate


@pytest.mark.parametrize(("name", "family"), [(m, "linf") for m in METHODS] + [("square", "l2")])
def test_iterates_are_feasible_and_losses_never_rise(name, family, linf_tasks, l2_tasks):
    task = (linf_tasks if family == "linf" else l2_tasks)[1]
    opt, oracle = l2l.make_optimizer(name), Oracle(task)
    state, losses = opt.init(task.x0(), seed=2), []
    for _ in range(120):
        state = opt.step(state, oracle)
        x, adv = state.x, task.image.flatten() + state.x
        norm = x.abs().max() if family == "linf" else x.norm()
        assert norm <= task.eps * (1 + 1e-5) and adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6
        assert torch.equal(state.slots["loss"], task.loss(x.unsqueeze(0))[0])
        losses.append(float(state.slots["loss"]))
    assert all(b <= a for a, b in itertools.pairwise(losses))


@pytest.mark.parametrize("name", METHODS)
def test_the_same_seed_gives_the_same_trajectory(name, linf_tasks):
    task = linf_tasks[2]
    opt = l2l.make_optimizer(name, **({"block_size": 2} if name == "parsimonious" else {}))
    first, again = run(opt, task, steps=60, seed=5), run(opt, task, steps=60, seed=5)
    assert first.losses == again.losses and torch.equal(first.x, again.x)
    if name == "square":  # the only one of the three that draws at every step
        assert run(opt, task, steps=60, seed=6).losses != first.losses


@pytest.mark.parametrize(("name", "budget"), [("square", 100), ("signhunter", 100), ("parsimonious", 200)])
def test_fools_the_model_within_a_small_budget(name, budget, linf_tasks):
    # measured at eps 0.3 on these 3 val images (seeds 0-2): square <= 14 queries, signhunter <= 11,
    # parsimonious <= 57 (its first pass at block size 4 costs 49+ queries)
    opt = l2l.make_optimizer(name)
    for seed, task in enumerate(linf_tasks):
        traj = run(opt, task, steps=budget, budget=budget, seed=seed, stop_at_success=True)
        assert traj.success_query is not None and traj.success_query <= budget, (name, seed)
        check = attack_table.queries_with_checks(traj, opt)
        assert check == traj.success_query + (traj.success_step > 0)


def test_square_l2_fools_the_model_at_eps_2(l2_tasks):
    # measured on these val images (seeds 0-2): 68, 345 and 390 queries; the first one is checked
    traj = run(Square(), l2_tasks[0], steps=150, budget=150, seed=0, stop_at_success=True)
    assert traj.success_query is not None and traj.x.norm() <= 2.0 * (1 + 1e-5)


def test_bad_arguments_and_incompatible_tasks_raise_clear_errors(linf_tasks, l2_tasks, quadratic_task):
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="p_init"):
            Square(p_init=bad)
    with pytest.raises(ValueError, match="schedule_budget"):
        Square(schedule_budget=0)
    with pytest.raises(ValueError, match="norm='l1'"):
        Square(norm="l1")
    with pytest.raises(ValueError, match="block_size"):
        Parsimonious(block_size=0)
    with pytest.raises(ValueError, match="norm='l2' but the task's ball is linf"):
        run(Square(norm="l2"), linf_tasks[0], steps=3)
    run(Square(norm="l2"), l2_tasks[0], steps=3)  # a matching norm is accepted
    for opt in (SignHunter(), Parsimonious()):
        with pytest.raises(ValueError, match="searches linf balls only, but the task's ball is l2"):
            run(opt, l2_tasks[0], steps=3)
    with pytest.raises(ValueError, match="needs ball"):
        run(Square(), quadratic_task, steps=3)


def test_tuning_signhunter_scores_its_defaults_once(linf_tasks):
    assert [s.keys for s in tune.search_space("square")] == [("p_init",)]
    assert tune.search_space("signhunter") == [tune.NO_TUNING]
    cfg = tune.TuneConfig(task="mnist_attack_linf", steps=20, budget=20, stop_at_success=True, write=False)
    result = tune.tune_one("signhunter", linf_tasks[:1], cfg, tqdm(disable=True))
    assert result["params"] == {} and len(result["grid"]) == 1
    assert result["val_final_loss"] == 0.0  # the first val image falls within 20 queries
