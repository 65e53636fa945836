"""ZO-NGD / white-box NGD, NES, SPSA, Guided ES, ZO-SZVR-G, the L-inf attack family and the attack table."""

from __future__ import annotations

import json

import pytest
import torch

import l2l
from eval import attack_table
from l2l.estimators import guided_basis, guided_directions, rademacher_directions
from l2l.optimizers.zo_ngd import damped_fisher_solve
from l2l.oracle import Oracle
from l2l.run import Trajectory
from l2l.tasks.quadratic import QuadraticTask

NEW = ["zo_ngd", "fo_ngd", "nes", "spsa", "guided_es", "zo_szvrg"]
# Untuned but sane settings, so these tests do not depend on the committed tuned.json.
QUADRATIC_SETTINGS = {
    "zo_ngd": {"delta": 2.0, "q": 10, "mu": 1e-3, "estimator": "gaussian", "gamma": 0.01},
    "fo_ngd": {"delta": 2.0, "gamma": 0.01},
    "nes": {"delta": 0.5, "q": 5, "mu": 1e-3},
    "spsa": {"delta": 0.5, "q": 5, "mu": 1e-3},
    "guided_es": {"delta": 5.0, "q": 5, "mu": 1e-3},
    "zo_szvrg": {"delta": 5.0, "q": 5, "mu": 1e-3, "q0": 20, "epoch": 5},
}
ATTACK_SETTINGS = {
    "zo_ngd": {},
    "fo_ngd": {},
    "nes": {},
    "spsa": {},
    "guided_es": {"delta": 10.0, "mu": 0.01},
    "zo_szvrg": {"delta": 10.0, "mu": 0.01},
}


class ScoredQuadratic(QuadraticTask):
    """A quadratic read as a Gaussian log-likelihood, log p = -f, so NGD methods can run on it."""

    def loss_and_log_likelihood(self, X, batch=None):
        values = self.loss(X, batch)
        return values, -values


@pytest.fixture(scope="module")
def linf_family():
    return l2l.make_family("mnist_attack_linf")


@pytest.fixture
def scored_quadratic():
    task = l2l.make_task("quadratic", split="test", index=0)
    return ScoredQuadratic(task.A, task.b)


# --- ZO-NGD's natural gradient ------------------------------------------------------------------


@pytest.mark.parametrize("score_scale", [1e-4, 1.0, 30.0])  # c^2 << gamma, ~ gamma, >> gamma
def test_sherman_morrison_equals_the_explicit_damped_fisher_solve(score_scale):
    g = torch.Generator().manual_seed(0)
    d, gamma = 7, 0.01
    grad = torch.randn(d, generator=g, dtype=torch.float64)
    score = score_scale * torch.randn(d, generator=g, dtype=torch.float64)
    fisher = torch.outer(score, score) + gamma * torch.eye(d, dtype=torch.float64)  # eq. 18
    expected = torch.linalg.solve(fisher, grad)
    assert torch.allclose(damped_fisher_solve(grad, score, gamma), expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(damped_fisher_solve(grad, torch.zeros(d, dtype=torch.float64), gamma), grad / gamma)
    with pytest.raises(ValueError, match="gamma=0"):
        damped_fisher_solve(grad, score, 0)


def test_zo_ngd_step_uses_both_estimates_from_the_same_r_plus_1_queries(linf_family):
    task = linf_family.instance("val", 0)
    opt = l2l.make_optimizer("zo_ngd", q=8, mu=0.5, delta=20.0)
    state, oracle = opt.init(task.x0(), seed=5), Oracle(task)
    x0 = state.x.clone()
    state = opt.step(state, oracle)
    assert (oracle.queries, oracle.calls) == (9, 1)  # R+1 rows in one call serve both estimates
    # Redo the step by hand: same directions, eq. 16-17 (sphere: times d), explicit Fisher, projection.
    d = task.dim
    u = torch.randn(8, d, generator=torch.Generator().manual_seed(5))
    u = u / u.norm(dim=1, keepdim=True)
    losses, loglik = task.loss_and_log_likelihood(torch.cat([x0[None], x0 + 0.5 * u]))
    g_hat = d * ((losses[1:] - losses[0]) / (0.5 * 8)) @ u
    s_hat = d * ((loglik[1:] - loglik[0]) / (0.5 * 8)) @ u
    fisher = torch.outer(s_hat, s_hat).double() + 0.01 * torch.eye(d, dtype=torch.float64)
    step = torch.linalg.solve(fisher, g_hat.double()).float()
    assert torch.allclose(state.x, task.project(x0 - (20.0 / d) * step), atol=1e-5)


def test_fo_ngd_is_a_one_query_white_box_reference(linf_family):
    task = linf_family.instance("val", 0)
    opt = l2l.make_optimizer("fo_ngd")
    assert opt.white_box and not l2l.make_optimizer("zo_ngd").white_box
    oracle = Oracle(task)
    opt.step(opt.init(task.x0()), oracle)
    assert (oracle.queries, oracle.white_box_calls) == (1, 1)


def test_ngd_needs_a_score_based_task(quadratic_task):
    # refused before the first query, naming the missing capability
    for name in ("zo_ngd", "fo_ngd"):
        with pytest.raises(ValueError, match=f"{name}.*needs likelihood"):
            l2l.run(l2l.make_optimizer(name), quadratic_task, steps=1)
    with pytest.raises(NotImplementedError, match="no log-likelihood"):
        quadratic_task.loss_and_log_likelihood(quadratic_task.x0()[None])


# --- every new optimizer: descent, query counts (feasibility: test_contracts.py) ----------------------


@pytest.mark.parametrize("name", NEW)
def test_lowers_a_quadratic(name, scored_quadratic):
    traj = l2l.run(l2l.make_optimizer(name, **QUADRATIC_SETTINGS[name]), scored_quadratic, steps=150, seed=0)
    # f(0) is about 1.0 and the minimum well below 0.4 (see test_optimizers.py)
    assert traj.losses[0] > 0.9
    assert traj.final_loss < 0.5 * traj.losses[0]


@pytest.mark.parametrize("name", NEW)
def test_lowers_an_attack_loss(name, linf_family):
    task = linf_family.instance("val", 0)  # margin 12.4 at the clean image
    traj = l2l.run(l2l.make_optimizer(name, **ATTACK_SETTINGS[name]), task, steps=100, budget=800, seed=0)
    assert traj.final_loss < traj.losses[0] - 3.0


@pytest.mark.parametrize(
    ("name", "params", "per_step"),
    [
        ("zo_ngd", {"q": 7}, [8] * 6),  # R+1
        ("fo_ngd", {}, [1] * 6),
        ("nes", {"q": 7}, [14] * 6),  # 2q
        ("spsa", {"q": 7}, [14] * 6),
        ("guided_es", {"q": 7}, [8] * 6),  # q+1
        ("zo_szvrg", {"q": 3, "q0": 11, "epoch": 3}, [12, 8, 8, 12, 8, 8]),  # q0+1 snapshot, then 2q+2
    ],
)
def test_query_counts_match_the_oracle_and_the_stated_arithmetic(name, params, per_step, scored_quadratic):
    opt = l2l.make_optimizer(name, **params)
    state, oracle = opt.init(scored_quadratic.x0()), Oracle(scored_quadratic)
    for expected in per_step:
        announced, before = opt.next_step_queries(state, scored_quadratic.dim), oracle.queries
        state = opt.step(state, oracle)
        assert announced == oracle.queries - before == expected
    traj = l2l.run(opt, scored_quadratic, steps=len(per_step), seed=0)  # run() checks every step too
    assert traj.queries == [0, *torch.tensor(per_step).cumsum(0).tolist()]


def test_szvrg_budget_stops_before_a_snapshot_step(scored_quadratic):
    opt = l2l.make_optimizer("zo_szvrg", q=3, q0=11, epoch=3)
    assert opt.queries_per_step(10) == 10  # ceil((12 + 2 * 8) / 3)
    traj = l2l.run(opt, scored_quadratic, steps=50, budget=39, seed=0)  # 12 + 8 + 8 = 28; next is 12
    assert traj.queries[-1] == 28 and traj.steps == 3


# --- direction samplers -------------------------------------------------------------------------


def test_guided_directions_have_the_guided_covariance():
    d, k, alpha, n = 6, 2, 0.5, 200_000
    g = torch.Generator().manual_seed(0)
    basis = guided_basis(torch.randn(k, d, generator=g, dtype=torch.float64))
    assert torch.allclose(basis.T @ basis, torch.eye(k, dtype=torch.float64), atol=1e-12)
    u = guided_directions(n, d, g, basis.float(), alpha).double()
    target = alpha / d * torch.eye(d, dtype=torch.float64) + (1 - alpha) / k * basis @ basis.T
    empirical = u.T @ u / n / d  # directions are scaled by sqrt(d) so that E||u||^2 = d
    # entries of d * target are at most 2; their sampling std at n = 2e5 is about 0.006: 5 sigma = 0.03
    assert (empirical - target).abs().max() * d < 0.03
    assert (u.pow(2).sum(dim=1).mean() / d).item() == pytest.approx(1.0, abs=0.01)
    # the full-space part alone would be far off in the guided directions
    assert ((alpha / d * torch.eye(d) - empirical.float()).abs().max() * d).item() > 0.5
    with pytest.raises(ValueError, match=r"alpha=1\.5"):
        guided_directions(2, d, g, basis, 1.5)


def test_guided_es_samples_isotropically_until_it_has_surrogates(scored_quadratic):
    opt = l2l.make_optimizer("guided_es", q=4, k=2)
    state, oracle = opt.init(scored_quadratic.x0()), Oracle(scored_quadratic)
    state = opt.step(state, oracle)
    assert len(state.slots["surrogates"]) == 1
    for _ in range(3):
        state = opt.step(state, oracle)
    assert len(state.slots["surrogates"]) == 2  # the last k estimates


def test_rademacher_directions_are_plus_minus_one():
    u = rademacher_directions(500, 30, torch.Generator().manual_seed(0))
    assert set(u.unique().tolist()) == {-1.0, 1.0}
    assert abs(u.mean().item()) < 0.02


# --- the L-inf attack family --------------------------------------------------------------------


def test_linf_family_shares_the_images_and_has_the_pure_margin_loss(linf_family, mnist_family):
    for split in ("val", "test"):
        assert linf_family.split_size(split) == mnist_family.split_size(split)
    task, l1_task = linf_family.instance("val", 3), mnist_family.instance("val", 3)
    assert task.image_id == l1_task.image_id and task.family == "mnist_attack_linf"
    assert (task.c, task.eps) == (0.0, 0.2)
    x = task.project(0.1 * torch.randn(task.dim, generator=torch.Generator().manual_seed(0)))
    loss, loglik = task.loss_and_log_likelihood(x[None])
    logp = torch.log_softmax(task.model(task.adversarial(x[None])), dim=1)[0]
    others = torch.cat([logp[: task.label], logp[task.label + 1 :]])
    assert torch.allclose(loss[0], (logp[task.label] - others.max()).clamp_min(0), atol=1e-5)
    assert torch.allclose(loglik[0], logp[task.label], atol=1e-6)
    assert l2l.make_family("mnist_attack_linf", eps=0.1).instance("val", 0).eps == 0.1
    with pytest.raises(ValueError, match="eps=0"):
        l2l.make_family("mnist_attack_linf", eps=0)


def test_query_with_likelihood_counts_each_row_once(linf_family):
    task = linf_family.instance("val", 0)
    oracle = Oracle(task, budget=5)
    losses, loglik = oracle.query_with_likelihood(torch.zeros(3, task.dim))
    assert (oracle.queries, oracle.calls) == (3, 1) and losses.shape == loglik.shape == (3,)
    with pytest.raises(l2l.QueryBudgetExceeded):
        oracle.query_with_likelihood(torch.zeros(3, task.dim))


# --- the attack table ---------------------------------------------------------------------------


@pytest.mark.slow
def test_attack_table_writes_json_and_markdown_with_the_stated_keys(tmp_path):
    out = tmp_path / "table.json"
    argv = ["--split", "val", "--instances", "2", "--budget", "150", "--methods", "zo_ngd,nes,fo_ngd"]
    attack_table.main([*argv, "--wandb", "disabled", "--out", str(out)])
    result = json.loads(out.read_text())
    assert {"task", "split", "instances", "trials", "budget", "eps", "results", "per_run"} <= set(result)
    assert result["eps"] == 0.2 and list(result["results"]) == ["zo_ngd", "nes", "fo_ngd"]
    keys = {
        "white_box", "success_rate", "success_rate_with_checks", "successes", "runs", "queries_mean",
        "queries_median", "queries_with_checks_mean", "queries_with_checks_median", "l1_mean", "l2_mean",
        "linf_mean", "queries_per_step",
    }  # fmt: skip
    for res in result["results"].values():
        assert keys <= set(res) and res["runs"] == 2
    assert result["results"]["fo_ngd"]["white_box"] and not result["results"]["nes"]["white_box"]
    assert len(result["per_run"]) == 6
    for row in result["per_run"]:
        if row["success_query"] is None:
            assert row["success_query_with_checks"] is None and row["linf"] is None
            continue
        # nes queries no iterate itself (1 check per step); the others evaluate theirs (1 final check)
        extra = row["success_step"] if row["optimizer"] == "nes" else 1
        assert row["success_query_with_checks"] == row["success_query"] + extra
        assert row["linf"] <= 0.2 + 1e-6 and row["l1"] >= row["l2"] >= row["linf"] > 0
    assert "fo_ngd †" in (tmp_path / "table.md").read_text()


def test_check_queries_add_one_per_step_only_when_steps_skip_their_iterate():
    traj = Trajectory(losses=[3.0] * 6, queries=[0, 20, 40, 60, 80, 100], success_step=5, success_query=100)
    forward, central = l2l.make_optimizer("zo_ngd"), l2l.make_optimizer("nes")
    assert forward.evaluates_iterate and not central.evaluates_iterate
    assert l2l.make_optimizer("zo_sgd", estimator="antithetic").evaluates_iterate is False
    assert attack_table.queries_with_checks(traj, forward) == 101
    assert attack_table.queries_with_checks(traj, central) == 105
    assert attack_table.queries_with_checks(Trajectory(losses=[1.0], queries=[0]), central) is None


def test_attack_table_rejects_unregistered_methods():
    with pytest.raises(KeyError, match=r"unknown optimizer 'no_such_method'; registered optimizers: "):
        attack_table.attack_table(attack_table.AttackTableConfig(methods="nes,no_such_method"))


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 2.0), (None, None)])
def test_fo_pgd_steps_the_way_its_ball_calls_for(norm, eps):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    image = torch.rand(1, 4, 4) * 0.5 + 0.25  # room to move in every direction
    options = {} if norm is None else {"eps": eps, "norm": norm}
    label = int(model(image[None]).argmax())  # classified right: the margin loss has a gradient
    task = l2l.tasks.AttackTask(model, image, label=label, c=0.0, **options)
    opt = l2l.make_optimizer("fo_pgd", delta=1.0)
    oracle = l2l.Oracle(task)
    _, grad = l2l.Oracle(task).value_and_grad(task.x0())
    state = opt.step(opt.init(task.x0()), oracle)
    lr = 1.0 / task.dim
    expected = {"linf": -lr * grad.sign(), "l2": -lr * grad / grad.norm(), None: -lr * grad}[norm]
    assert grad.abs().max() > 0 and torch.allclose(state.x, expected, atol=1e-7)
