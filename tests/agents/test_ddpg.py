"""agents.ddpg: the DDPG agent of papers/003 Algorithm 2 (warm start, switch, imitation) and its zips."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3 import DDPG

import agents
import l2l
from agents import ZORL, ZORLAgent
from agents.ddpg import cosine_loss
from envs import MDPSpec, ZOEnv
from l2l.common.paths import checkpoints_dir
from l2l.diagnostics import cosine_trace, true_gradient
from tests.agents.helpers import DIM, assert_sb3_predicts_the_project_policy, quadratic_env, tiny_agent


class RecordingEnv(ZOEnv):
    """A ZOEnv that remembers every action it executed."""

    def __init__(self, **kwargs):
        super().__init__("quadratic", mdp=MDPSpec(mu=1e-3, eta=0.1), **kwargs)
        self.executed: list[np.ndarray] = []
        self.warm: list[np.ndarray] = []

    def step(self, action):
        self.executed.append(np.array(action, copy=True))
        return super().step(action)

    def probe(self, action, q):
        out = super().probe(action, q)
        self.warm.append(out["gaussian_action"])
        return out


@pytest.mark.slow
def test_warm_start_transitions_store_the_actions_really_taken():
    env = RecordingEnv(family_kwargs={"dim": DIM}, index=0, steps=10)
    agent = tiny_agent(env, switch_threshold=2.0, learning_starts=10_000)  # never switches, never trains
    agent.learn(30)
    stored = agent.replay_buffer.actions[:30, 0]
    assert not agent.switched and len(env.executed) == 30
    assert np.array_equal(stored, np.stack(env.executed)) and np.array_equal(stored, np.stack(env.warm))
    policy_actions = agent.predict(agent.replay_buffer.observations[:30, 0], deterministic=True)[0]
    assert not np.allclose(stored, policy_actions, atol=1e-2)  # the buffer holds g_hat, not the policy's


@pytest.mark.slow
def test_switch_hands_the_steps_to_the_policy():
    env = RecordingEnv(family_kwargs={"dim": DIM}, index=0, steps=10)
    agent = tiny_agent(env, switch_threshold=-1.0, switch_window=5, action_noise=None, learning_starts=10_000)
    agent.learn(12)
    assert agent.switched and agent.switch_step == 4 and len(env.warm) == 5
    auto = tiny_agent(quadratic_env(), switch_threshold="auto")
    assert auto.switch_threshold == 5 / (DIM + 5)  # q / (d + q)
    obs = agent.replay_buffer.observations[5:12, 0]
    assert np.allclose(
        agent.replay_buffer.actions[5:12, 0], agent.predict(obs, deterministic=True)[0], atol=1e-6
    )


@pytest.mark.slow  # 10 s: a 1,500-step training
def test_imitation_fits_the_warm_start_actions_while_the_critic_learns_by_td():
    env = quadratic_env()
    agent = tiny_agent(env, switch_threshold=2.0, learning_starts=100, imitate=True)  # never switches
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    agent.learn(1500)
    buffer = agent.replay_buffer
    obs, stored = buffer.observations[:1500, 0], buffer.actions[:1500, 0]
    actions = agent.predict(obs, deterministic=True)[0]
    task = env._instance("train", 0)
    grads = torch.stack([true_gradient(task, torch.as_tensor(o), None) for o in obs])
    cos = torch.nn.functional.cosine_similarity(torch.as_tensor(actions), grads, dim=1).mean()
    warm_cos = torch.nn.functional.cosine_similarity(torch.as_tensor(stored), grads, dim=1).mean()
    assert not agent.switched
    # the least-squares fit averages the noisy g_hat directions: it tracks the gradient better than they
    # do. Measured: 0.98 with imitation; the same run without it (the critic drives the actor) 0.77
    assert cos > max(0.9, float(warm_cos)), (float(cos), float(warm_cos))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters(), strict=True))


@pytest.mark.slow  # 20 s: two 1,500-step trainings
def test_cosine_imitation_keeps_the_warm_start_actions_size_where_least_squares_shrinks_it():
    ratios = {}
    for loss in ("squares", "cosine"):
        env = quadratic_env()
        agent = tiny_agent(env, switch_threshold=2.0, learning_starts=100, imitate=True, imitation_loss=loss)
        agent.learn(1500)
        obs, stored = agent.replay_buffer.observations[:1500, 0], agent.replay_buffer.actions[:1500, 0]
        actions = agent.predict(obs, deterministic=True)[0]
        ratios[loss] = float(np.linalg.norm(actions, axis=1).mean() / np.linalg.norm(stored, axis=1).mean())
        task = env._instance("train", 0)
        grads = torch.stack([true_gradient(task, torch.as_tensor(o), None) for o in obs])
        cos = torch.nn.functional.cosine_similarity(torch.as_tensor(actions), grads, dim=1).mean()
        assert cos > 0.9, (loss, float(cos))
    # the least-squares mean of noisy directions is shorter than each; cosine fits their norm. Measured:
    # squares 0.73 of the stored actions' mean norm, cosine 0.99
    assert 0.85 < ratios["cosine"] < 1.15 and ratios["squares"] < ratios["cosine"] - 0.1, ratios


def test_the_cosine_loss_separates_direction_and_size():
    target = torch.tensor([[3.0, 4.0], [0.0, -1.0]])
    assert float(cosine_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    # twice the size, same direction: only the norm term, (2 - 1)^2
    assert float(cosine_loss(2 * target, target)) == pytest.approx(1.0, abs=1e-6)
    # opposite direction at the same size: only 1 - cos = 2
    assert float(cosine_loss(-target, target)) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="imitation_loss='huber'"):
        tiny_agent(quadratic_env(), imitate=True, imitation_loss="huber")


@pytest.mark.slow
def test_policy_only_save_is_smaller_and_acts_the_same(trained_image_policy, tmp_path):
    agent, _, task, path = trained_image_policy
    slim = tmp_path / "slim.zip"
    agent.save_policy_only(slim)
    with zipfile.ZipFile(slim) as archive:
        saved = torch.load(archive.open("policy.pth"), weights_only=True)
        for name in ("actor.optimizer.pth", "critic.optimizer.pth"):  # settings, no Adam moments
            assert torch.load(archive.open(name), weights_only=True)["state"] == {}
    assert not any(k.startswith(("actor_target.", "critic_target.")) for k in saved)
    assert slim.stat().st_size < 0.6 * path.stat().st_size and not agent.policy_only
    loaded = ZORLAgent.load(slim, device="cpu")
    observations = np.random.default_rng(1).uniform(-0.5, 0.5, (5, 16)).astype(np.float32)
    assert np.array_equal(agent.predict(observations, deterministic=True)[0],
                          loaded.predict(observations, deterministic=True)[0])  # fmt: skip
    for online, target in ((loaded.actor, loaded.actor_target), (loaded.critic, loaded.critic_target)):
        assert all(torch.equal(a, b) for a, b in zip(online.state_dict().values(),
                                                      target.state_dict().values(), strict=True))  # fmt: skip
    assert l2l.run(l2l.load_optimizer(slim), task, steps=8).losses == l2l.run(
        l2l.load_optimizer(path), task, steps=8).losses  # fmt: skip
    params = loaded.get_parameters()
    params["policy"].pop(next(k for k in params["policy"] if k.startswith("actor.")))
    with pytest.raises(ValueError, match="does not match"):
        loaded.set_parameters(params)


@pytest.mark.parametrize("name", sorted(ZORL.shipped_files.values()))
@pytest.mark.slow
def test_stable_baselines3_loads_the_shipped_zips(name):
    path = checkpoints_dir() / name
    family = agents.read_policy(path).zo_rl["env"]["task"]
    assert ZORL.shipped_files[family] == name
    assert_sb3_predicts_the_project_policy(path, l2l.make_task(family, split="test", index=0))


def test_stable_baselines3_loads_a_fresh_policy_only_zip(trained_image_policy, tmp_path):
    agent, _, task, full = trained_image_policy
    slim = tmp_path / "slim.zip"
    agent.save_policy_only(slim)
    assert_sb3_predicts_the_project_policy(slim, task, seed=1)
    assert_sb3_predicts_the_project_policy(full, task, seed=2, policy_only=False)  # a full save


def without_optimizers(source, target) -> None:
    """Copy the zip ``source`` to ``target`` without optimizer entries: a policy-only zip as once saved."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if "optimizer" not in info.filename:
                new.writestr(info, old.read(info))


def test_upgrade_adds_optimizer_entries_and_keeps_the_rest_bit_for_bit(trained_image_policy, tmp_path):
    agent, _, task, full = trained_image_policy
    agent.save_policy_only(tmp_path / "slim.zip")
    old = tmp_path / "old.zip"
    without_optimizers(tmp_path / "slim.zip", old)
    before = l2l.run(l2l.load_optimizer(old), task, steps=8, seed=0).losses  # the project reads it as it is
    with pytest.raises((ValueError, KeyError)):  # stable-baselines3 wants every optimizer's entry
        DDPG.load(old, device="cpu")
    with zipfile.ZipFile(old) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    assert agents.upgrade_policy_zip(old) is True and agents.upgrade_policy_zip(old) is False
    with zipfile.ZipFile(old) as archive:
        assert {name: archive.read(name) for name in entries} == entries
        assert set(archive.namelist()) - set(entries) == {"actor.optimizer.pth", "critic.optimizer.pth"}
    assert l2l.run(l2l.load_optimizer(old), task, steps=8, seed=0).losses == before
    assert_sb3_predicts_the_project_policy(old, task)
    for bad, match in ((full, "not a policy-only"), (tmp_path / "missing.zip", r"missing\.zip")):
        with pytest.raises(ValueError, match=match):
            agents.upgrade_policy_zip(bad)


@pytest.mark.slow  # 30 s: 4,000 DDPG steps
def test_ddpg_beats_random_directions_on_a_quadratic():
    env = quadratic_env()
    agent = tiny_agent(env, switch_threshold=0.4, switch_window=20)
    agent.learn(4000)
    task, optimizer = env._instance("train", 0), ZORL(policy=agent.policy, mdp=env.mdp)
    random = l2l.make_optimizer("zo_sgd", q=1, mu=env.mdp.mu, delta=env.mdp.eta * DIM)
    learned = np.mean([cosine_trace(optimizer, task, 20, seed=s)[1] for s in range(3)])
    baseline = np.mean([cosine_trace(random, task, 20, seed=s)[1] for s in range(3)])
    # measured after 4,000 steps, agent seeds 0, 1, 2: policy 0.85, 0.87, 0.79; random directions 0.33.
    # At 2,400 steps one CPU gave seed 0 0.23 (another 0.6-0.75): DDPG needs the longer run to be robust.
    assert agent.switched and learned > baseline + 0.2, (learned, baseline)
