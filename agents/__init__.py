"""Reinforcement-learning agents for ZO sampling policies (papers/003), on stable-baselines3.

- :class:`ZORLAgent`: DDPG with Algorithm 2's Gaussian warm start and cosine-similarity switch;
- :class:`ZORLPolicy`: its CNN (images) / MLP (vectors) actor and critic with batch norm;
- :class:`ZORL`, :class:`ZORLLSTM`: a trained policy as a ZO optimizer (``zo_rl``), and as the
  direction sampler of a trained ZO-LSTM (``zo_rl_lstm``).

``l2l.load_optimizer`` reads policy zips through :func:`agents.zo_rl.load_policy_file`, declared as the
``zo_rl`` entry point of the ``l2l.loaders`` group in pyproject.toml (l2l never imports agents by name).
The same zips load the stable-baselines3 way, ``stable_baselines3.DDPG.load(path)`` or
``ZORLAgent.load(path)`` (:mod:`agents.zo_rl`); :func:`upgrade_policy_zip` brings older policy-only
zips to that layout.
"""

from agents.ddpg import ZORLAgent, upgrade_policy_zip
from agents.networks import IterateFeatures, PairCritic, ZORLPolicy
from agents.zo_rl import (
    SHIPPED,
    ZORL,
    ZORLLSTM,
    attach_info,
    load_zo_rl,
    load_zo_rl_lstm,
    read_policy,
    shipped_policy,
)

__all__ = [
    "SHIPPED",
    "ZORL",
    "ZORLLSTM",
    "IterateFeatures",
    "PairCritic",
    "ZORLAgent",
    "ZORLPolicy",
    "attach_info",
    "load_zo_rl",
    "load_zo_rl_lstm",
    "read_policy",
    "shipped_policy",
    "upgrade_policy_zip",
]
