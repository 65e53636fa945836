"""Fixtures of the agent tests: a small trained image policy, saved."""

from __future__ import annotations

import pytest
import torch

import l2l
from envs import MDPSpec, ZOEnv
from tests.agents.helpers import tiny_agent


@pytest.fixture(scope="module")
def trained_image_policy(tmp_path_factory):
    """A few DDPG updates on a tiny image-shaped (1x4x4) attack, saved: the CNN networks with batch norm."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    torch.manual_seed(0)
    task = l2l.tasks.AttackTask(model, torch.rand(1, 4, 4), label=int(model(torch.rand(1, 1, 4, 4)).argmax()))
    env = ZOEnv(task, steps=10, mdp=MDPSpec(mu=1e-3, eta=0.05), terminate_on_success=False)
    extractor = {"image_shape": env.image_shape, "width": 4}
    agent = tiny_agent(
        env, learning_starts=40, batch_size=16, switch_threshold=0.0, switch_window=3,
        policy_kwargs={"features_extractor_kwargs": extractor},
    )  # fmt: skip
    agent.learn(80)
    path = tmp_path_factory.mktemp("policy") / "image_policy.zip"
    agent.save(path)
    return agent, env, task, path
