"""Gymnasium environments that wrap one ZO task instance as the MDP of papers/003 (see :mod:`envs.zo_env`).

Importing this package registers three ids with gymnasium::

    import gymnasium as gym
    import envs  # noqa: F401  (registration)
    env = gym.make("l2l/ZOAttack-v0", split="val", index=3)       # mnist_attack
    env = gym.make("l2l/ZOBinary-v0", index=None, steps=500)      # binary_classification
    env = gym.make("l2l/ZOOrder-v0", observe="image")             # fashion_order_attack (papers/004)

All take the keyword arguments of :class:`envs.zo_env.ZOEnv` (``task``, ``split``, ``index``, ``mu``,
``eta``, ``steps``, ``family_kwargs``, ...). The environment truncates episodes itself at ``steps``, so
the ids carry no ``max_episode_steps`` (a second TimeLimit would only shadow it).

``l2l/ZOOrder-v0`` is the same MDP on the order attack: the loss is the oracle's -tau_S, so a reward is
a change of tau_S (multiples of 2 / (k(k-1)/2), 0.2 at k = 5) and an episode ends early once tau_S
passes 0.99 (the family's success). Three settings differ from the other ids (:data:`ENV_OPTIONS`):

- ``mu = 4/255``, the default ball radius: -tau_S is piecewise constant, and the other ids' fallback
  mu = 1e-4 (the family has no tuned ZO-SGD values) almost never changes the ranking, so the
  iterate never moves. ``eta = 1e-4`` moves a pixel by about 0.33/255 per unit of u when one pair
  flips (k = 5). Both come from a short scan with random actions.
- ``steps = 499``: an episode spends 1 + 2 * 499 = 999 queries, within papers/004's budget of
  Q = 1,000 queries (the family's ``default_steps`` counts Rand's steps, one query each).

``observe="image"`` (or ``image_delta``) shows the perturbed query image, as for the classifier attacks
(:attr:`l2l.tasks.Task.perturbs_image`); ``family_kwargs`` sets k, N and eps (in 1/255; mu stays 4/255
unless passed).
"""

from __future__ import annotations

import gymnasium

from envs.mdp import OBSERVE_MODES, action_to_direction, direction_to_action, image_shape, observation
from envs.zo_env import ZOEnv, default_mu_eta
from l2l.tasks import default_steps

#: gymnasium id -> the task family it wraps; episodes last the family's ``default_steps`` (papers/002
#: sec. 4: 200 steps for attacks, 500 for binary) unless :data:`ENV_OPTIONS` says otherwise
ENV_IDS = {
    "l2l/ZOAttack-v0": "mnist_attack",
    "l2l/ZOBinary-v0": "binary_classification",
    "l2l/ZOOrder-v0": "fashion_order_attack",
}
#: papers/004's query budget Q of one order attack
ORDER_BUDGET = 1000
#: gymnasium id -> the ZOEnv settings it fixes beyond its family (see the module docstring)
ENV_OPTIONS: dict[str, dict[str, float | int]] = {
    # a step costs 2 queries, f(x_0) one more: (Q - 1) // 2 steps stay within the budget
    "l2l/ZOOrder-v0": {"mu": 4 / 255, "eta": 1e-4, "steps": (ORDER_BUDGET - 1) // 2},
}


def _register() -> None:
    for env_id, family in ENV_IDS.items():
        if env_id not in gymnasium.registry:  # a re-import (e.g. importlib.reload) must not fail
            kwargs = {"task": family, "split": "train", "index": None, "steps": default_steps(family)}
            gymnasium.register(
                id=env_id, entry_point="envs.zo_env:ZOEnv", kwargs={**kwargs, **ENV_OPTIONS.get(env_id, {})}
            )


_register()

__all__ = [
    "ENV_IDS",
    "ENV_OPTIONS",
    "OBSERVE_MODES",
    "ORDER_BUDGET",
    "ZOEnv",
    "action_to_direction",
    "default_mu_eta",
    "direction_to_action",
    "image_shape",
    "observation",
]
