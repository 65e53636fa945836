"""What the ZO-RL tests share: a small quadratic MDP, a tiny DDPG agent, and the stable-baselines3 check."""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import DDPG

import l2l
from agents import ZORLAgent, ZORLPolicy, attach_info
from agents.zo_rl import eval_mode
from envs import MDPSpec, ZOEnv, action_to_direction, observation

DIM = 6


def quadratic_env(index: int | None = 0, **mdp) -> ZOEnv:
    """A 6-d quadratic MDP (train instance ``index``, 20 steps); ``mdp`` changes its :class:`MDPSpec`."""
    spec = MDPSpec(**{"mu": 1e-3, "eta": 0.1, **mdp})
    return ZOEnv("quadratic", family_kwargs={"dim": DIM}, split="train", index=index, steps=20, mdp=spec)


def tiny_agent(env: ZOEnv, **changes) -> ZORLAgent:
    """A small DDPG agent on ``env`` with its MDP attached (``changes`` override the agent's options)."""
    options = dict(
        learning_rate=1e-3, buffer_size=5000, learning_starts=200, batch_size=64, gamma=0.9, tau=0.01,
        seed=0, device="cpu", switch_threshold=None, probe_q=5,
        policy_kwargs={"net_arch": [64], "features_extractor_kwargs": {"hidden": 64}},
    )  # fmt: skip
    agent = ZORLAgent(ZORLPolicy, env, **{**options, **changes})
    attach_info(agent, env)
    return agent


def assert_sb3_predicts_the_project_policy(path, task, seed: int = 0, policy_only: bool = True) -> None:
    """``stable_baselines3.DDPG.load(path)`` acts as ``l2l.load_optimizer(path)``'s policy on 4 iterates.

    A policy-only zip's target networks start as copies of the networks.
    """
    model, optimizer = DDPG.load(path, device="cpu"), l2l.load_optimizer(path)
    assert type(model) is DDPG and isinstance(model.policy, ZORLPolicy)
    online = model.policy.state_dict()
    assert all(torch.equal(v, online[k]) for k, v in optimizer.policy.state_dict().items())
    for net, target in ((model.actor, model.actor_target), (model.critic, model.critic_target)):
        assert not policy_only or all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                      target.state_dict().values(), strict=True))  # fmt: skip
    d = int(model.action_space.shape[0])
    xs = 0.05 * torch.randn(4, d, generator=torch.Generator().manual_seed(seed))
    obs = np.stack([observation(task, x, optimizer.observe) for x in xs])
    actions = model.predict(obs, deterministic=True)[0]
    with torch.no_grad(), eval_mode(optimizer.policy.actor):
        mine = optimizer.policy.actor(torch.as_tensor(obs)).numpy()
    assert actions.shape == (4, d) and np.abs(actions).max() > 0
    # equal but for float32 rounding in stable-baselines3's rescaling from [-1, 1] to the box [-1, 1]
    np.testing.assert_allclose(actions, mine, rtol=0, atol=1e-6)
    for x, action in zip(xs, actions, strict=True):
        torch.testing.assert_close(optimizer.direction(x, task), action_to_direction(action))
