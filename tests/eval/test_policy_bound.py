"""eval.policy_bound: white-box directions of a set cosine to the gradient, stepped like zo_rl."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import l2l
from envs import MDPSpec
from eval import policy_bound
from eval.policy_bound import BoundConfig, EstimateFollowingPolicy, GradientCosinePolicy, blend_with_gradient
from l2l.diagnostics import true_gradient

COS = torch.nn.functional.cosine_similarity
#: the single-direction MDP the synthetic policies step
MDP = MDPSpec(q=1, mu=1e-3, eta=0.05)


def quadratic_task(dim: int = 8):
    return l2l.make_family("quadratic", dim=dim).instance("val", 0)


@pytest.mark.parametrize("cosine", [0.0, 0.1, 0.7, 1.0])
def test_blend_has_the_asked_cosine_and_a_gaussian_norm(cosine):
    gen = torch.Generator().manual_seed(0)
    grad, noise = torch.randn(50, generator=gen), torch.randn(50, generator=gen)
    u = blend_with_gradient(grad, noise, cosine)
    assert float(COS(u, grad, dim=0)) == pytest.approx(cosine, abs=1e-5)
    assert float(u.norm()) == pytest.approx(50**0.5, rel=1e-5)
    flat = blend_with_gradient(torch.zeros(50), noise, cosine)  # no gradient: the noise's direction
    assert float(COS(flat, noise, dim=0)) == pytest.approx(1.0, abs=1e-6)


def test_track_follows_the_gradient_and_fixed_holds_its_first_direction():
    task = quadratic_task()
    oracle = l2l.Oracle(task)
    for track in (True, False):
        policy = GradientCosinePolicy(mdp=MDP, cosine=0.3, track=track)
        state = policy.init(task.project(task.x0()), seed=0)
        first = policy.propose(state, oracle)
        state.x = state.x + torch.linspace(-1, 1, task.dim)  # move the iterate: the gradient changes
        second = policy.propose(state, oracle)
        grad = true_gradient(task, state.x, None)
        if track:
            assert float(COS(second, grad, dim=0)) == pytest.approx(0.3, abs=1e-5)
        else:
            assert torch.equal(first, second) and abs(float(COS(second, grad, dim=0)) - 0.3) > 0.05


def test_held_follows_the_gradient_with_the_same_error_at_every_step():
    task = quadratic_task(dim=50)
    oracle = l2l.Oracle(task)
    policy = GradientCosinePolicy(mdp=MDP, cosine=0.3, hold_noise=True)
    state = policy.init(task.project(task.x0()), seed=0)
    errors = []
    for _ in range(2):
        u, grad = policy.propose(state, oracle), true_gradient(task, state.x, None)
        assert float(COS(u, grad, dim=0)) == pytest.approx(0.3, abs=1e-5)
        unit = grad / grad.norm()
        errors.append(u - (u @ unit) * unit)
        state.x = state.x + 0.3 * torch.linspace(-1, 1, task.dim)  # a small move: the gradient turns
    # the off-gradient part is the held noise, minus its (small) share along the new gradient
    assert float(COS(errors[0], errors[1], dim=0)) > 0.95
    fresh = GradientCosinePolicy(mdp=MDP, cosine=0.3)
    state = fresh.init(task.project(task.x0()), seed=0)
    assert float(COS(fresh.propose(state, oracle), fresh.propose(state, oracle), dim=0)) < 0.5


def test_a_step_costs_two_queries_and_is_marked_white_box():
    task = quadratic_task()
    traj = l2l.run(GradientCosinePolicy(mdp=MDP, policy_prob=0.5), task, steps=8, seed=1)
    assert np.diff(traj.queries).tolist() == [2] * 8
    assert GradientCosinePolicy.white_box and GradientCosinePolicy(cosine=1.0).config()["cosine"] == 1.0
    with pytest.raises(ValueError, match=r"cosine=1\.5"):
        GradientCosinePolicy(cosine=1.5)


def test_a_higher_cosine_descends_faster():
    task = quadratic_task(dim=20)

    def final(cosine: float) -> float:
        policy = GradientCosinePolicy(mdp=replace(MDP, eta=0.02), cosine=cosine)
        return float(np.mean([l2l.run(policy, task, steps=30, seed=s).final_loss for s in range(3)]))

    # cosine 0.9 carries (0.9 / 0.1)^2 = 81 times the directional signal of cosine 0.1 at the same norm
    start = task.loss(task.x0().unsqueeze(0)).item()
    assert final(0.9) < final(0.1) < start


@pytest.mark.slow
def test_cli_writes_the_comparison_and_the_bound_table(tmp_path):
    out = tmp_path / "pb.json"
    result = policy_bound.main([
        "--task", "quadratic", "--instances", "2", "--budget", "40", "--cosines", "0.2,0.8",
        "--policy-probs", "1", "--etas", "0.01,0.05", "--modes", "track", "--out", str(out),
    ])  # fmt: skip
    labels = list(result["results"])
    assert labels[0] == "zo_sgd" and len(labels) == 1 + 2 * 2  # reference + cosines x etas
    assert result["sources"] == {label: "white-box synthetic policy" for label in labels[1:]} | {
        "zo_sgd": "zo_sgd"
    }
    saved = json.loads(out.read_text())
    assert (
        saved["results"].keys() == result["results"].keys() and saved["bound_config"]["cosines"] == "0.2,0.8"
    )
    table = (tmp_path / "pb_bound.md").read_text()
    for cosine in ("0.2", "0.8"):
        rows = [line for line in table.splitlines() if line.startswith(f"| track c={cosine} P=1 †")]
        best = min(
            (result["results"][f"track c={cosine} P=1 eta={eta}"]["final_loss_mean"], eta)
            for eta in ("0.01", "0.05")
        )
        assert len(rows) == 1 and f"| {best[1]} |" in rows[0]  # each configuration at its best eta
    assert all(result["results"][label]["runs"] == 2 for label in labels)


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown mode"):
        BoundConfig(modes="track,sideways")
    with pytest.raises(ValueError, match="cosines=''"):
        BoundConfig(cosines="")
    with pytest.raises(ValueError, match="instances=0"):
        BoundConfig(instances=0)
    with pytest.raises(ValueError, match="add --directions guided"):
        BoundConfig(modes="last")
    with pytest.raises(ValueError, match=r"strength=1\.5"):
        BoundConfig(directions="guided", strengths="0.5,1.5")


def test_guided_rows_set_the_mean_action_from_the_gradient_or_the_past_estimates():
    task, q = quadratic_task(), 4
    oracle = l2l.Oracle(task)
    white = GradientCosinePolicy(mdp=replace(MDP, directions="guided", q=q), cosine=0.6, strength=0.25)
    state = white.init(task.project(task.x0()), seed=0)
    mean = white.guided_mean(state, oracle)
    assert float(mean.abs().max()) == pytest.approx(0.25)
    assert float(COS(mean, true_gradient(task, state.x, None), dim=0)) == pytest.approx(0.6, abs=1e-5)
    for memory in (0.0, policy_bound.EMA_DECAY):
        follower = EstimateFollowingPolicy(
            mdp=replace(MDP, directions="guided", q=q), memory=memory, strength=0.5
        )
        state = follower.init(task.project(task.x0()), seed=0)
        assert not follower.guided_mean(state, oracle).any()  # no estimate yet: a ZO-SGD step
        expected = torch.zeros(task.dim)
        for _ in range(3):
            state = follower.step(state, oracle)
            expected = memory * expected + (1 - memory) * state.slots["estimate"]
        assert torch.allclose(state.slots["followed"], expected)
        assert torch.allclose(follower.guided_mean(state, oracle), 0.5 * expected / expected.abs().max())
    assert np.diff(l2l.run(follower, task, steps=3, seed=0).queries).tolist() == [q + 1] * 3
    trend = policy_bound.synthetic_policy(BoundConfig(q=q), "trend", 0.0, 0.5, 1.0, 1e-3, 0.05)
    # its slot is ZORL.step's trend of the fresh parts (tests/agents/test_zo_rl.py checks that recursion)
    assert trend.observe == "iterate_trend" and trend.memory == 0.0
    state = trend.init(task.project(task.x0()), seed=0)
    for _ in range(3):
        state = trend.step(state, oracle)
    trend_mean = state.slots["estimate"]
    assert torch.allclose(trend.guided_mean(state, oracle), 0.5 * trend_mean / trend_mean.abs().max())


@pytest.mark.slow
def test_guided_cli_labels_the_rows_by_mode_and_strength(tmp_path):
    out = tmp_path / "bound.json"
    policy_bound.main([
        "--task", "quadratic", "--instances", "1", "--budget", "30", "--q", "4", "--directions", "guided",
        "--modes", "track,ema,trend", "--cosines", "0.5", "--strengths", "0.5", "--policy-probs", "1",
        "--etas", "0.05", "--out", str(out),
    ])  # fmt: skip
    labels = list(json.loads(out.read_text())["results"])
    assert labels == [
        "zo_sgd", "track c=0.5 s=0.5 P=1 eta=0.05", "ema s=0.5 P=1 eta=0.05", "trend s=0.5 P=1 eta=0.05"
    ]  # fmt: skip
