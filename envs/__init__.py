"""Gymnasium environments that wrap one ZO task instance as the MDP of papers/003 (see :mod:`envs.zo_env`).

Importing this package registers two ids with gymnasium::

    import gymnasium as gym
    import envs  # noqa: F401  (registration)
    env = gym.make("l2l/ZOAttack-v0", split="val", index=3)       # mnist_attack
    env = gym.make("l2l/ZOBinary-v0", index=None, steps=500)      # binary_classification

Both take the keyword arguments of :class:`envs.zo_env.ZOEnv` (``task``, ``split``, ``index``, ``mu``,
``eta``, ``steps``, ...). The environment truncates episodes itself at ``steps``, so the ids carry no
``max_episode_steps`` (a second TimeLimit would only shadow it).
"""

from __future__ import annotations

import gymnasium

from envs.mdp import OBSERVE_MODES, action_to_direction, direction_to_action, image_shape, observation
from envs.zo_env import ZOEnv, default_mu_eta
from l2l.tasks import default_steps

#: gymnasium id -> the task family it wraps; episodes last the family's ``default_steps`` (papers/002
#: sec. 4: 200 steps for attacks, 500 for binary)
ENV_IDS = {"l2l/ZOAttack-v0": "mnist_attack", "l2l/ZOBinary-v0": "binary_classification"}


def _register() -> None:
    for env_id, family in ENV_IDS.items():
        if env_id not in gymnasium.registry:  # a re-import (e.g. importlib.reload) must not fail
            gymnasium.register(
                id=env_id,
                entry_point="envs.zo_env:ZOEnv",
                kwargs={"task": family, "split": "train", "index": None, "steps": default_steps(family)},
            )


_register()

__all__ = [
    "ENV_IDS",
    "OBSERVE_MODES",
    "ZOEnv",
    "action_to_direction",
    "default_mu_eta",
    "direction_to_action",
    "image_shape",
    "observation",
]
