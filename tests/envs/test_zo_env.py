"""envs.zo_env: the ZO-RL MDP as a gymnasium environment (papers/003): rewards, queries, observations."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # registers the gymnasium ids
import l2l
from envs import MDPSpec, ZOEnv, action_to_direction, direction_to_action, step
from envs.mdp import TREND_DECAY, image_shape
from l2l.estimators import fresh_part
from l2l.learned import save_zo_lstm
from l2l.learned.zo_lstm import ZOLSTM
from tests.agents.helpers import DIM, quadratic_env, tiny_agent


@pytest.mark.parametrize("make", ["quadratic", *envs.ENV_IDS])
@pytest.mark.slow
def test_both_env_checkers_pass(make):
    env = quadratic_env(index=None) if make == "quadratic" else gym.make(make, steps=4).unwrapped
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")  # the iterate is unbounded, by design
        warnings.filterwarnings("ignore", message=".*render modes.*")
        gym_check_env(env)
        sb3_check_env(env)


def test_image_delta_observation_shows_the_image_and_the_normalized_perturbation():
    env = gym.make("l2l/ZOAttack-v0", steps=4, mdp=MDPSpec(observe="image_delta")).unwrapped
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        gym_check_env(env)
        sb3_check_env(env)
    assert env.image_shape == (2, 28, 28) and env.observation_space.shape == (2 * 784,)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs[:784], env.task.image.flatten().numpy()) and not obs[784:].any()
    obs, *_ = env.step(np.random.default_rng(0).uniform(-1, 1, 784).astype(np.float32))
    delta = env.x.numpy()
    assert np.allclose(obs[784:], delta / np.abs(delta).max()) and np.abs(obs[784:]).max() == 1.0
    assert np.allclose(obs[:784], env.task.adversarial(env.x.unsqueeze(0))[0].flatten().numpy())
    agent = tiny_agent(env, learning_starts=8, batch_size=4, policy_kwargs={
        "features_extractor_kwargs": {"image_shape": env.image_shape, "width": 2}})  # fmt: skip
    agent.learn(12)  # a two-channel CNN actor and critic train; the action stays one direction [784]
    assert agent.predict(obs, deterministic=True)[0].shape == (784,)


@pytest.mark.slow
def test_order_env_rewards_tau_s_gains_and_observes_the_query_image():
    env = gym.make("l2l/ZOOrder-v0", steps=6, index=0, mdp=MDPSpec(observe="image")).unwrapped
    # the family's own MDP defaults (envs.spec.FAMILY_MDP), whatever observation the spec asks for
    assert (env.task_name, env.mdp.mu, env.mdp.eta) == ("fashion_order_attack", 4 / 255, 1e-4)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, env.task.image.flatten().numpy())  # the query image (delta = 0)
    tau, rewards, rng = float(env.task.tau_s(env.x.unsqueeze(0))[0]), [], np.random.default_rng(1)
    for _ in range(6):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.dim).astype(np.float32))
        new_tau = float(env.task.tau_s(env.x.unsqueeze(0))[0])
        assert reward == pytest.approx(new_tau - tau, abs=1e-6) and info["loss"] == pytest.approx(-new_tau)
        assert not terminated and (truncated == (env.k == 6))
        tau = new_tau
        rewards.append(reward)
    assert any(rewards)  # mu = 4/255 moves the ranking (the fallback mu = 1e-4 would not)
    assert info["queries"] == 1 + 2 * 6 and float(env.x.abs().max()) <= 4 / 255 + 1e-7
    assert np.allclose(obs, env.task.adversarial(env.x.unsqueeze(0))[0].flatten().numpy())


def test_reward_is_the_loss_decrease_and_queries_are_exact():
    env = quadratic_env()
    task = env._instance("train", 0)
    obs, info = env.reset(seed=3)
    assert info["queries"] == 0 and np.array_equal(obs, task.x0().numpy())
    rng, total = np.random.default_rng(0), 0.0
    for k in range(1, 8):
        before = float(task.loss(env.x.unsqueeze(0))[0])
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, DIM).astype(np.float32))
        after = float(task.loss(env.x.unsqueeze(0))[0])
        assert isinstance(reward, float) and reward == pytest.approx(before - after, abs=1e-6)
        assert info["loss"] == pytest.approx(after, abs=1e-7)
        assert info["queries"] == 1 + 2 * k  # f(x0) once, then the probe and the new point
        total += reward
    assert total == pytest.approx(float(task.loss(task.x0().unsqueeze(0))[0]) - after, abs=1e-5)
    assert env.probe(np.ones(DIM, dtype=np.float32), q=5)["queries"] == info["queries"] + 6  # q + 1


def test_stochastic_task_rewards_share_the_steps_minibatch():
    env = ZOEnv("binary_classification", split="train", index=0, steps=5, family_kwargs={"dim": 10, "n": 200})
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for k in range(1, 4):
        batch, x = env.batch, env.x.clone()
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, 10).astype(np.float32))
        losses = env.task.loss(torch.stack([x, env.x]), batch)
        assert reward == pytest.approx(float(losses[0] - losses[1]), abs=1e-6)
        assert info["queries"] == 3 * k and not torch.equal(env.batch, batch)


def test_env_is_deterministic_and_options_pick_the_instance():
    env = quadratic_env(index=None)
    a, b = env.reset(seed=5), env.reset(seed=5)
    assert a[1] == b[1]
    steps = [env.step(np.full(DIM, 0.5, dtype=np.float32))[1] for _ in range(2)]
    env.reset(seed=5)
    assert [env.step(np.full(DIM, 0.5, dtype=np.float32))[1] for _ in range(2)] == steps
    assert env.reset(options={"split": "val", "index": 2})[1] == {"queries": 0, "split": "val", "index": 2}
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"instance": 1})


def test_actions_map_to_directions_of_norm_sqrt_d():
    u = action_to_direction(np.array([0.5, -0.25, 0.0, 0.1], dtype=np.float32))
    assert float(u.norm()) == pytest.approx(2.0)
    back = action_to_direction(direction_to_action(u))
    assert torch.allclose(back, u, atol=1e-6)
    assert torch.equal(action_to_direction(np.zeros(3, dtype=np.float32)), torch.zeros(3))


def test_image_observations_and_cnn_shapes_come_from_the_task_capabilities():
    with pytest.raises(ValueError, match=r"observe='image' needs a task that perturbs an image"):
        ZOEnv("quadratic", mdp=MDPSpec(observe="image"), family_kwargs={"dim": DIM})
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    square = l2l.tasks.AttackTask(model, torch.rand(1, 4, 4), label=0)
    flat = l2l.tasks.AttackTask(model, torch.rand(16), label=0)  # an image that is no (C, H, W)
    assert image_shape(square) == (1, 4, 4) and image_shape(flat) is None
    assert image_shape(l2l.make_task("quadratic", split="test", index=0)) is None


def test_guided_step_spends_q_plus_one_queries_and_is_zo_sgd_at_the_zero_action():
    q = 4
    env = quadratic_env(directions="guided", q=q)
    task = env._instance("train", 0)
    env.reset(seed=3)
    assert env.describe()["directions"] == "guided" and env.describe()["q"] == q
    x, rng = env.x.clone(), torch.Generator().manual_seed(0)
    rng.set_state(env._rng.get_state())
    info = env.step(np.zeros(DIM, dtype=np.float32))[4]
    assert info["queries"] == 1 + q + 1  # f(x0), the q probes, the new point
    z = torch.randn(q, DIM, generator=rng)  # the zero action leaves ZO-SGD's N(0, I) directions
    f0 = task.loss(x.unsqueeze(0))[0]
    grad = ((task.loss(x.unsqueeze(0) + env.mdp.mu * z) - f0) / env.mdp.mu) @ z / q
    assert torch.allclose(env.x, task.project(x - env.mdp.eta * grad), atol=1e-6)
    env.step(np.ones(DIM, dtype=np.float32))
    assert env.oracle.queries == info["queries"] + q + 1  # the new point is the next base value
    with pytest.raises(ValueError, match="directions='both' must be one of single, guided"):
        quadratic_env(directions="both")


def test_image_delta_estimate_observation_stacks_the_image_the_perturbation_and_the_estimate():
    env = gym.make(
        "l2l/ZOAttack-v0", steps=4, mdp=MDPSpec(observe="image_delta_estimate", directions="guided", q=3)
    )
    env = env.unwrapped
    assert env.image_shape == (3, 28, 28) and env.observation_space.shape == (3 * 784,)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs[:784], env.task.image.flatten().numpy()) and not obs[784:].any()
    x = env.x.clone()
    obs, *_ = env.step(np.zeros(784, dtype=np.float32))
    delta = env.x.numpy()
    assert np.allclose(obs[784:1568], delta / np.abs(delta).max())
    moved = (x - env.x).numpy()  # the step was project(x - eta * estimate): same sign where unclamped
    agree = np.sign(obs[1568:]) == np.sign(moved)
    assert np.abs(obs[1568:]).max() == pytest.approx(1.0) and agree[moved != 0].mean() > 0.99
    agent = tiny_agent(env, learning_starts=8, batch_size=4, policy_kwargs={
        "features_extractor_kwargs": {"image_shape": env.image_shape, "width": 2}})  # fmt: skip
    agent.learn(12)  # a three-channel CNN actor; the action stays one direction [784]
    assert agent.predict(obs, deterministic=True)[0].shape == (784,)
    assert agent.policy.actor.mu.skip.shape == (3, 784)


def test_estimate_observation_shows_the_last_step_estimate():
    env = quadratic_env(directions="guided", q=4, observe="iterate_estimate")
    assert env.observation_space.shape == (2 * DIM,)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs[:DIM], env.x.numpy()) and not obs[DIM:].any()  # no step, no estimate yet
    x = env.x.clone()
    obs, *_ = env.step(np.full(DIM, 0.5, dtype=np.float32))
    grad = (x - env.x) / env.mdp.eta  # the step was x - eta * estimate (the quadratic is unconstrained)
    assert np.allclose(obs[DIM:], (grad / grad.abs().max()).numpy(), atol=1e-5)
    assert np.abs(obs[DIM:]).max() == pytest.approx(1.0)
    agent = tiny_agent(env, learning_starts=8, batch_size=4)
    agent.learn(12)  # the vector actor over two channels gets the skip head; the action stays [d]
    assert agent.predict(obs, deterministic=True)[0].shape == (DIM,)
    assert agent.policy.actor.mu.skip.shape == (2, DIM)
    with pytest.raises(ValueError, match="needs a task that perturbs an image"):
        quadratic_env(observe="image_estimate")
    attack = gym.make("l2l/ZOAttack-v0", steps=2, mdp=MDPSpec(observe="image_estimate")).unwrapped
    assert attack.image_shape == (2, 28, 28)


def test_trend_observation_is_the_running_mean_of_the_fresh_parts(monkeypatch):
    calls = []

    def spy(observe, est, mean, memory):
        out = next_memory(observe, est, mean, memory)
        calls.append((torch.as_tensor(mean).clone(), memory, est, out))
        return out

    next_memory = step.next_memory
    monkeypatch.setattr(step, "next_memory", spy)  # the step that ZOEnv and ZORL share
    env = quadratic_env(directions="guided", q=4, observe="iterate_trend")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2 * DIM,) and not obs[DIM:].any()  # no step, no trend yet
    action = np.full(DIM, 0.5, dtype=np.float32)
    obs = [env.step(action)[0] for _ in range(2)][-1]
    (mean0, memory0, est0, out0), (mean1, memory1, est1, out1) = calls
    assert torch.equal(mean0, torch.as_tensor(action)) and memory0 is None
    assert torch.allclose(out0, (1 - TREND_DECAY) * fresh_part(est0, mean0))
    assert memory1 is out0
    assert torch.allclose(out1, TREND_DECAY * out0 + (1 - TREND_DECAY) * fresh_part(est1, mean1))
    assert np.allclose(obs[DIM:], (out1 / out1.abs().max()).numpy(), atol=1e-6)


def test_inside_a_zo_lstm_the_env_steps_its_directions_and_its_update(tmp_path):
    lstm_path = save_zo_lstm(tmp_path / "lstm.pt", ZOLSTM(q=4, mu=1e-3))
    env = quadratic_env(directions="guided", zo_lstm=str(lstm_path), mu=None)
    assert (env.mdp.q, env.mdp.mu, env.describe()["zo_lstm"]) == (4, 1e-3, str(lstm_path))
    env.reset(seed=0)
    x, carry = env.x.clone(), env.lstm.initial_carry(DIM)
    info = env.step(np.zeros(DIM, dtype=np.float32))[4]
    assert info["queries"] == 1 + 4 + 1 and not torch.equal(env.x, x)
    assert not torch.equal(env._carry["update_h"], carry["update_h"])  # its UpdateRNN took the step
    with pytest.raises(ValueError, match="pass directions='guided'"):
        quadratic_env(zo_lstm=str(lstm_path))
    with pytest.raises(ValueError, match="leave q unset"):
        quadratic_env(directions="guided", zo_lstm=str(lstm_path), q=7)


def test_describe_holds_the_resolved_mdp_and_reads_back_as_the_same_spec():
    env = quadratic_env(directions="guided", q=3, observe="iterate_trend")
    described = env.describe()
    assert {k: described[k] for k in ("task", "dim", "steps")} == {
        "task": "quadratic",
        "dim": DIM,
        "steps": 20,
    }
    assert MDPSpec.from_describe(described) == env.mdp and env.mdp.resolved
    # single steps resolve q to 1; unset mu and eta come from the family (envs.spec.default_mu_eta)
    plain = ZOEnv("quadratic", family_kwargs={"dim": DIM}, index=0)
    assert plain.mdp.q == 1 and (plain.mdp.mu, plain.mdp.eta) == envs.default_mu_eta("quadratic", DIM)
    with pytest.raises(TypeError, match=r"mdp must be an envs\.MDPSpec"):
        ZOEnv("quadratic", mdp={"observe": "iterate"})
