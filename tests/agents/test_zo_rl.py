"""agents.zo_rl: trained ZO-RL policies as optimizers (``zo_rl``, ``zo_rl_lstm``), loading, and the MDP step
they share with the environment."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents  # the policy zips load through its l2l.loaders entry point, not through this import
import envs  # registers the gymnasium ids
import l2l
from agents import ZORL, load_zo_rl, load_zo_rl_lstm
from agents.zo_rl import ZORLLSTM
from envs import MDPSpec, action_to_direction, observation
from envs.step import guided_directions
from eval.specs import build_optimizers, parse_optimizers
from l2l.common.paths import checkpoints_dir
from l2l.diagnostics import true_gradient
from l2l.learned import save_zo_lstm
from l2l.learned.zo_lstm import ZOLSTM
from tests.agents.helpers import DIM, quadratic_env, tiny_agent

#: relative tolerances across CPUs: the first steps, and the last (as tests/test_pinned_trajectories.py)
REL, REL_LAST = 1e-4, 1e-2

#: shipped policy (and ZO-LSTM) -> (steps, losses after steps 1..5, after the last step): test index 0,
#: seed 0, recorded before the MDP step was shared between the environment and the optimizer
PINNED = {
    ("mnist_attack", "zo_rl_mnist.zip", None): (
        15, [13.3953857421875, 13.079364776611328, 12.874638557434082, 12.743895530700684,
             12.574567794799805],
        11.762702941894531,
    ),
    ("binary_classification", "zo_rl_binary.zip", None): (
        30, [0.23816613852977753, 0.2594018280506134, 0.24471469223499298, 0.23681513965129852,
             0.23849815130233765],
        0.14303573966026306,
    ),
    ("mnist_attack", "zo_rl_mnist.zip", "zo_lstm_mnist.pt"): (
        10, [11.268868446350098, 11.28251838684082, 11.097280502319336, 10.902420043945312,
             10.752361297607422],
        9.807393074035645,
    ),
}  # fmt: skip


@pytest.mark.parametrize(("family", "policy", "lstm"), list(PINNED))
def test_shipped_policies_keep_their_pinned_trajectories(family, policy, lstm):
    steps, first, last = PINNED[(family, policy, lstm)]
    path = checkpoints_dir() / policy
    optimizer = l2l.load_optimizer(path) if lstm is None else load_zo_rl_lstm(path, checkpoints_dir() / lstm)
    losses = l2l.run(optimizer, l2l.make_task(family, split="test", index=0), steps, seed=0).losses
    assert losses[1:6] == pytest.approx(first, rel=REL) and losses[steps] == pytest.approx(last, rel=REL_LAST)


@pytest.mark.slow
def test_save_load_predict_gives_identical_actions(trained_image_policy):
    agent, env, task, path = trained_image_policy
    assert env.image_shape == (1, 4, 4)
    observations = np.random.default_rng(0).uniform(-0.5, 0.5, (7, 16)).astype(np.float32)
    loaded = agents.ZORLAgent.load(path, device="cpu")
    assert np.array_equal(
        agent.predict(observations, deterministic=True)[0],
        loaded.predict(observations, deterministic=True)[0],
    )
    optimizer = l2l.load_optimizer(path)
    assert optimizer.mdp == env.mdp  # the zip's MDP is the environment's, resolved
    assert isinstance(optimizer, ZORL) and optimizer.config() == {
        "mu": 1e-3,
        "eta": 0.05,
        "observe": "iterate",
        "policy_prob": 1.0,
        "directions": "single",
        "q": 1,
    }
    x = torch.as_tensor(observations[0])
    expected = action_to_direction(loaded.predict(observations[:1], deterministic=True)[0][0])
    assert torch.allclose(optimizer.direction(x, task), expected, atol=1e-5)
    mine = ZORL(policy=agent.policy, mdp=env.mdp)
    assert l2l.run(mine, task, steps=8).losses == l2l.run(optimizer, task, steps=8).losses


def test_loader_names_a_bad_file(tmp_path, trained_image_policy):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.zip"):
        l2l.load_optimizer(bad)
    with pytest.raises(FileNotFoundError, match=r"train\.ddpg_policy"):
        load_zo_rl(tmp_path / "missing.zip")
    plain = tiny_agent(quadratic_env())
    del plain.zo_rl
    plain.save(tmp_path / "plain.zip")
    with pytest.raises(ValueError, match="not a ZO-RL policy"):
        load_zo_rl(tmp_path / "plain.zip")
    untrained = load_zo_rl(trained_image_policy[3], variant="untrained")
    x = torch.rand(16)
    assert not torch.allclose(
        untrained.direction(x, None), l2l.load_optimizer(trained_image_policy[3]).direction(x, None)
    )


@pytest.mark.slow
def test_policy_prob_mixes_policy_and_gaussian_directions(trained_image_policy, monkeypatch):
    _, _, task, path = trained_image_policy
    trained, untrained = load_zo_rl(path), load_zo_rl(path, variant="untrained")
    for variant in (trained, untrained):
        variant.policy_prob = 0.0
    # P = 0 never asks the policy: two different policies give the same Gaussian run
    assert l2l.run(trained, task, steps=6, seed=3).losses == l2l.run(untrained, task, steps=6, seed=3).losses
    trained.policy_prob = untrained.policy_prob = 1.0
    assert l2l.run(trained, task, steps=6, seed=3).losses != l2l.run(untrained, task, steps=6, seed=3).losses
    calls = []
    mixed = load_zo_rl(path, policy_prob=0.25)
    original = mixed.direction
    monkeypatch.setattr(mixed, "direction", lambda x, t, e=None: calls.append(1) or original(x, t, e))
    traj = l2l.run(mixed, task, steps=400, seed=0)
    # binomial(400, 0.25): std 0.022, so 0.25 +- 0.07 is a 3-sigma band; each step still costs 2 queries
    assert abs(len(calls) / 400 - 0.25) < 0.07 and traj.queries[-1] == 800
    with pytest.raises(ValueError, match=r"policy_prob=1\.5"):
        load_zo_rl(path, policy_prob=1.5)


def test_zo_rl_and_zo_rl_lstm_spend_the_announced_queries(trained_image_policy, tmp_path):
    _, _, task, path = trained_image_policy
    traj = l2l.run(l2l.load_optimizer(path), task, steps=10, seed=1)
    assert [b - a for a, b in zip(traj.queries, traj.queries[1:], strict=False)] == [2] * 10
    lstm = save_zo_lstm(tmp_path / "lstm.pt", ZOLSTM(q=4, mu=1e-3))
    combined = load_zo_rl_lstm(path, lstm)
    traj = l2l.run(combined, task, steps=10, seed=1)
    assert [b - a for a, b in zip(traj.queries, traj.queries[1:], strict=False)] == [5] * 10
    x, rng = torch.rand(16), torch.Generator().manual_seed(0)
    directions = combined.sample_directions(x, l2l.Oracle(task), rng, None)
    plain = ZOLSTM.sample_directions(combined, x, None, torch.Generator().manual_seed(0), None)
    assert torch.allclose(directions[0], combined.sampler.direction(x, task)) and torch.equal(
        directions[1:], plain[1:]
    )


@pytest.mark.slow
def test_zo_rl_lstm_asks_the_policy_with_chance_p(trained_image_policy, tmp_path, monkeypatch):
    _, _, task, path = trained_image_policy
    lstm = save_zo_lstm(tmp_path / "lstm.pt", ZOLSTM(q=4, mu=1e-3))
    never = load_zo_rl_lstm(path, lstm, policy_prob=0.0)
    monkeypatch.setattr(never.sampler, "direction", lambda x, t: pytest.fail("P = 0 asked the policy"))
    x = torch.rand(16)
    directions = never.sample_directions(x, l2l.Oracle(task), torch.Generator().manual_seed(0), None)
    plain = ZOLSTM.sample_directions(never, x, None, torch.Generator().manual_seed(0), None)
    assert torch.equal(directions, plain)  # P = 0: all q directions are the ZO-LSTM's Gaussian ones
    mixed, calls = load_zo_rl_lstm(path, lstm, policy_prob=0.25), []
    original = mixed.sampler.direction
    monkeypatch.setattr(mixed.sampler, "direction", lambda x, t: calls.append(1) or original(x, t))
    traj = l2l.run(mixed, task, steps=400, seed=0)
    # binomial(400, 0.25): std 0.022, so 0.25 +- 0.07 is a 3-sigma band; each step still costs q + 1
    assert abs(len(calls) / 400 - 0.25) < 0.07 and traj.queries[-1] == 400 * 5
    agent = agents.read_policy(path)
    agent.zo_rl["policy_prob"] = 0.3  # as train.ddpg_policy stores its val choice
    agent.save(tmp_path / "chosen.zip")
    for variant in ("zo_rl", "untrained"):
        assert load_zo_rl_lstm(tmp_path / "chosen.zip", lstm, variant).policy_prob == 0.3
    control = load_zo_rl_lstm(path, lstm, variant="untrained")
    assert control.name == "zo_rl_lstm_untrained"
    assert not torch.equal(*(next(o.sampler.policy.actor.parameters()) for o in (control, mixed)))
    with pytest.raises(ValueError, match=r"policy_prob=2"):
        load_zo_rl_lstm(path, lstm, policy_prob=2)


def test_compare_specs_accept_policies(trained_image_policy, tmp_path):
    path = trained_image_policy[3]
    lstm = save_zo_lstm(tmp_path / "lstm.pt", ZOLSTM(q=4, mu=1e-3))
    specs = parse_optimizers(f"mine={path},both={path}#lstm={lstm},zo_sgd", "quadratic", q=4)
    assert [s.label for s in specs] == ["mine", "mine_untrained", "both", "both_untrained", "zo_sgd"]
    built = dict(build_optimizers(specs))
    assert built["mine"].name == "zo_rl" and built["mine_untrained"].name == "zo_rl_untrained"
    assert built["both"].name == "zo_rl_lstm" and built["both_untrained"].name == "zo_rl_lstm_untrained"
    # the ZO-RL-LSTM control keeps the trained ZO-LSTM and swaps in an untrained policy
    both, control = built["both"], built["both_untrained"]
    assert control.config() == both.config()
    assert all(
        torch.equal(a, b)
        for a, b in zip(control.update_net.parameters(), both.update_net.parameters(), strict=True)
    )
    assert not torch.equal(*(next(o.sampler.policy.actor.parameters()) for o in (control, both)))
    with pytest.raises(ValueError, match="unknown ZO-RL variant"):
        parse_optimizers(f"x={path}#nope", "quadratic", q=4)


def test_shipped_policies_are_declared_like_learned_checkpoints():
    assert agents.SHIPPED is ZORL.shipped_files and ZORL.shipped_files.keys() == ZOLSTM.shipped_files.keys()
    for task, name in ZORL.shipped_files.items():
        path = agents.shipped_policy(task)
        assert path == checkpoints_dir() / name and path.is_file()
    with pytest.raises(KeyError, match=r"no ZO-RL policy ships for task 'quadratic'.*ddpg_policy --task"):
        agents.shipped_policy("quadratic")


def test_importing_agents_registered_the_loader():
    assert agents.ZORL is ZORL and "l2l/ZOAttack-v0" in gym.registry and envs.ENV_IDS


def test_guided_zo_rl_biases_its_directions_by_the_action_and_spends_q_plus_one(trained_image_policy):
    _, _, task, path = trained_image_policy
    trained = l2l.load_optimizer(path)
    guided = dataclasses.replace(trained, mdp=dataclasses.replace(trained.mdp, directions="guided", q=5))
    traj = l2l.run(guided, task, steps=3, seed=0)
    assert guided.queries_per_step(task.dim) == 6 and traj.queries == [0, 6, 12, 18]
    action = guided.action(task.x0(), task)
    u = guided_directions(action, 2000, torch.Generator().manual_seed(1))
    assert torch.allclose(u.mean(dim=0), action, atol=0.1)  # the policy's action is the directions' mean


def test_estimate_observation_reaches_the_policy_of_the_optimizer():
    env = quadratic_env(directions="guided", q=4, observe="iterate_estimate")
    agent = tiny_agent(env, learning_starts=8, batch_size=4)
    agent.learn(12)
    seen = []
    policy = ZORL(policy=agent.policy, mdp=env.mdp)
    original = policy.action
    policy.action = lambda x, task, estimate=None: seen.append(estimate) or original(x, task, estimate)
    traj = l2l.run(policy, env._instance("train", 0), steps=3, seed=0)
    assert seen[0] is None and all(e is not None and e.shape == (DIM,) for e in seen[1:])
    assert traj.queries == [0, 5, 10, 15]
    lstm = ZORLLSTM(q=4)
    with pytest.raises(ValueError, match="shows the policy the past ZO estimates"):
        lstm.sampler = policy  # the ZO-RL-LSTM does not pass its policy the estimates


def test_a_policy_trained_inside_a_zo_lstm_loads_as_zo_rl_lstm(tmp_path):
    lstm_path = save_zo_lstm(tmp_path / "lstm.pt", ZOLSTM(q=4, mu=1e-3))
    env = quadratic_env(directions="guided", zo_lstm=str(lstm_path), mu=None)
    agent = tiny_agent(env, learning_starts=8, batch_size=4, probe_q=4)
    agent.learn(12)
    agent.save(tmp_path / "inside.zip")
    for variant in ("zo_rl", "untrained"):
        combined = load_zo_rl(tmp_path / "inside.zip", variant)
        assert isinstance(combined, ZORLLSTM) and combined.sampler.mdp == env.mdp
        assert torch.equal(combined.update_net.cell.weight_ih, env.lstm.update_net.cell.weight_ih)
    traj = l2l.run(combined, env._instance("train", 0), steps=3, seed=0)
    assert traj.queries == [0, 5, 10, 15]
    assert load_zo_rl(tmp_path / "inside.zip", policy_prob=0.3).policy_prob == 0.3
    with pytest.raises(ValueError, match="only policy_prob can"):
        load_zo_rl(tmp_path / "inside.zip", eta=0.1)
    with pytest.raises(ValueError, match="unknown ZO-RL variant 'lstm'"):
        load_zo_rl(tmp_path / "inside.zip", "lstm")
    x, always = torch.rand(DIM), dataclasses.replace(combined, policy_prob=1.0)
    always.update_net, always.query_net = combined.update_net, combined.query_net
    always.sampler = combined.sampler
    std = torch.linspace(0.5, 1.5, DIM)
    directions = always.sample_directions(x, l2l.Oracle(env._instance("train", 0)), torch.Generator(), std)
    a = combined.sampler.action(x, None)
    plain = ZOLSTM.sample_directions(always, x, None, torch.Generator(), std)
    assert torch.allclose(directions, plain + a * std)  # every direction is s * (a + z_i)


def test_policy_tracking_measures_the_actions_against_the_gradient_and_each_other():
    from eval.cosine import policy_tracking
    from eval.policy_bound import GradientCosinePolicy

    env = quadratic_env()
    task = env._instance("train", 0)
    agent = tiny_agent(env, learning_starts=8, batch_size=4)
    agent.learn(12)
    policy = ZORL(policy=agent.policy, mdp=env.mdp)
    to_gradient, consecutive, turns = policy_tracking(policy, task, steps=5, seed=0, budget=None)
    assert len(to_gradient) == 6 and len(consecutive) == len(turns) == 5  # x0 and after each step; pairs
    assert all(0 <= c <= 1 + 1e-6 for c in to_gradient)
    assert all(-1 - 1e-6 <= c <= 1 + 1e-6 for c in consecutive + turns)

    class Exact(GradientCosinePolicy):  # a "policy" whose action is the true gradient itself
        def action(self, x, task, estimate=None):
            return true_gradient(task, x, None)

    exact = Exact(mdp=env.mdp, cosine=1.0)
    to_gradient, consecutive, turns = policy_tracking(exact, task, steps=3, seed=0, budget=None)
    assert to_gradient == pytest.approx([1.0] * 4, abs=1e-5)
    assert consecutive == pytest.approx(turns, abs=1e-5)  # its actions turn exactly as the gradient does
    assert min(turns) < 1 - 1e-4  # and the gradient does turn along the run


@pytest.mark.parametrize(
    "mdp",
    [
        {},
        {"observe": "iterate_estimate"},
        {"directions": "guided", "q": 4},
        {"directions": "guided", "q": 4, "observe": "iterate_estimate"},
        {"directions": "guided", "q": 3, "observe": "iterate_trend"},
    ],
)
def test_the_env_and_the_optimizer_take_the_same_step(mdp):
    """ZOEnv.step and ZORL.step run envs.step on the same MDP: from the same iterate, with the same
    action and noise, they reach the same next iterate and show the policy the same observation."""
    env = quadratic_env(**mdp)
    agent = tiny_agent(env, learning_starts=8, batch_size=4)
    agent.learn(10)
    optimizer, task = ZORL(policy=agent.policy, mdp=env.mdp), env._instance("train", 0)
    obs, _ = env.reset(seed=0)
    oracle, state = l2l.Oracle(task), optimizer.init(env.x.clone(), seed=1)
    hook = {"single": "propose", "guided": "guided_mean"}[env.mdp.directions]
    sample = getattr(optimizer, hook)

    def same_noise(state, oracle):  # after the optimizer's coin: the env draws the same directions
        env._rng.set_state(state.rng.get_state())
        return sample(state, oracle)

    setattr(optimizer, hook, same_noise)
    for _ in range(4):
        estimate = state.slots.get("estimate")
        assert np.allclose(obs, observation(task, state.x, env.mdp.observe, estimate), rtol=1e-6, atol=1e-7)
        action = optimizer.action(state.x, task, estimate).numpy()
        state = optimizer.step(state, oracle)
        obs, *_ = env.step(action)
        # the env queries f(x) once per point, the optimizer with its probes: equal up to rounding
        torch.testing.assert_close(env.x, state.x, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(env._estimate, state.slots["estimate"], rtol=1e-4, atol=1e-6)
    # the same cost: the env's f(x_{k+1}) (its reward) is the next step's f(x), which the optimizer
    # queries with its probes; only the env's f(x_0) comes on top
    assert env.oracle.queries == 1 + oracle.queries


def test_every_entry_point_refuses_an_invalid_combination(trained_image_policy, tmp_path):
    trend_single = "follows the noise of guided steps"
    with pytest.raises(ValueError, match=trend_single):
        quadratic_env(observe="iterate_trend")  # the environment
    optimizer = load_zo_rl(trained_image_policy[3])
    with pytest.raises(ValueError, match=trend_single):
        ZORL(policy=optimizer.policy, mdp=dataclasses.replace(optimizer.mdp, observe="iterate_trend"))
    with pytest.raises(ValueError, match=trend_single):
        load_zo_rl(trained_image_policy[3], observe="iterate_trend")  # the loader's overrides
    with pytest.raises(ValueError, match="ZORL steps a resolved MDP"):
        ZORL(policy=optimizer.policy, mdp=MDPSpec())
    trend_lstm = save_zo_lstm(tmp_path / "trend.pt", ZOLSTM(q=4, mu=1e-3, directions="trend"))
    with pytest.raises(ValueError, match="draws its own directions and would ignore the policy"):
        load_zo_rl_lstm(trained_image_policy[3], trend_lstm)  # the ZO-RL-LSTM
