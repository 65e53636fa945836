"""One task instance as the MDP of papers/003 sec. 3: the agent picks the query direction of each ZO step.

At iterate x_k the agent's action a (a point of Box(-1, 1)^d) becomes the direction u = sqrt(d) a/||a||
(:func:`envs.mdp.action_to_direction`). The environment then takes one two-query ZO-SGD step through a
counted :class:`l2l.Oracle` (papers/003 eq. 2 and Algorithm 2 line 13)::

    g = (f(x_k + mu u) - f(x_k)) / mu * u,     x_{k+1} = project(x_k - eta g)

and pays the reward r_k = f(x_k) - f(x_{k+1}), the loss decrease (papers/003 writes the difference the
other way round but asks for the reward that "reach[es] the minimum ... as quickly as possible").

Which f, and what it costs: both values are the losses the oracle reports. f(x_{k+1}) is queried at the
new point on the step's minibatch; on a deterministic task it is also the base value f(x_k) of the next
step, so a step costs **2 queries** (the probe and the new point) plus one for f(x_0) before the first
step, and the rewards of an episode sum to f(x_0) - f(x_K) exactly. On a stochastic task (minibatch
losses) the reward compares both points on the *same* minibatch, and the next step draws a new one
whose base value must be queried again: **3 queries** per step. With ``directions="guided"`` the probe
is q points instead of one, so a step costs q + 1 queries (q + 2 on a stochastic task).
``info["queries"]`` is the oracle's running count (Algorithm 2's warm-start probes, :meth:`ZOEnv.probe`,
included).

Episodes end by truncation after ``steps`` steps (the iteration budget), or by termination when the
iterate solves the task (attack success; checked like ``l2l.run`` does, without a query: the
score-based black box reveals the top class with the new point's query). ``reset(seed=...)`` is
deterministic; ``index=None`` draws a fresh instance of the split at every reset (training spans the
whole split), and ``reset(options={"split": s, "index": i})`` picks one instance for that episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

import l2l
from envs.mdp import (
    action_to_direction,
    direction_to_action,
    observation,
    observation_channels,
    observed_image_shape,
)
from envs.spec import MDPSpec, check_mdp
from envs.step import estimate_step, finish_step
from l2l.estimators import forward_estimate, gaussian_directions
from l2l.oracle import Oracle
from l2l.tasks.base import Task, TaskFamily, check_split


class ZOEnv(gym.Env):
    """The ZO-RL environment (see the module docstring).

    Args:
        task: a registered task family name, or one :class:`~l2l.tasks.base.Task` instance (then
            ``split``, ``index`` and ``instances`` are ignored).
        split: the split episodes draw instances from.
        index: the instance of ``split``; None draws one (uniformly, from the env's seeded generator)
        steps: the iteration budget of an episode (truncation); the registered ids and
            ``train.ddpg_policy`` pass the family's ``default_steps``.
        instances: with ``index=None``, draw among the first ``instances`` of the split (None: all).
        mdp: how an action becomes a step and what the policy observes (:class:`envs.spec.MDPSpec`:
            observation, direction form, q, mu, eta, ZO-LSTM; None: its defaults). Its unset q, mu and
            eta are filled in for the task (:meth:`MDPSpec.resolve`); :attr:`mdp` holds the result, the
            object a ``zo_rl`` optimizer of this MDP takes.
        reward_scale: factor on every reward (small losses, e.g. binary classification's ~1e-3
            decreases, train better scaled up); ``info`` reports the unscaled loss.
        terminate_on_success: end the episode when the iterate solves the task.
        family_kwargs: keyword arguments of the task family (e.g. ``{"dim": 8}`` for ``quadratic``).
        render_mode: only None (nothing to render).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(
        self,
        task: str | Task = "mnist_attack",
        split: str = "train",
        index: int | None = None,
        steps: int = 200,
        instances: int | None = None,
        mdp: MDPSpec | None = None,
        reward_scale: float = 1.0,
        terminate_on_success: bool = True,
        family_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: ZOEnv renders nothing; pass None")
        if steps < 1:
            raise ValueError(f"steps={steps} must be >= 1 (the iteration budget of an episode)")
        if not reward_scale > 0:
            raise ValueError(f"reward_scale={reward_scale!r} must be > 0")
        mdp = MDPSpec() if mdp is None else mdp
        if not isinstance(mdp, MDPSpec):
            raise TypeError(f"mdp must be an envs.MDPSpec, got {type(mdp).__name__}")
        # the spec checked its task-free rules when it was made; the task and the ZO-LSTM come next
        self.family, self._fixed = self._resolve(task, family_kwargs or {})
        self.split, self.index, self.instances = check_split(split), index, instances
        self._tasks: dict[tuple[str, int], Task] = {}
        first = self._fixed or self._instance(self.split, 0 if index is None else index)
        self._pool_size(self.split)  # fail now on a bad ``instances``
        self.dim = first.dim
        self.task_name = task if isinstance(task, str) else (first.family or type(first).__name__)
        self.lstm = self._load_lstm(mdp.zo_lstm)
        #: the resolved MDP (q, mu and eta filled in), which a ``zo_rl`` optimizer of this MDP takes
        self.mdp = check_mdp(mdp, first, self.lstm).resolve(self.task_name, self.dim, self.lstm)
        self.steps, self.reward_scale = steps, float(reward_scale)
        self.terminate_on_success = terminate_on_success
        self.image_shape = observed_image_shape(first, self.mdp.observe)
        obs_dim = self.dim * observation_channels(self.mdp.observe)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.dim,), dtype=np.float32)
        self.task: Task | None = None

    @staticmethod
    def _load_lstm(path: str | None) -> Any:
        """The frozen ZO-LSTM to step inside, or None (see :attr:`MDPSpec.zo_lstm`)."""
        if path is None:
            return None
        from l2l.learned.checkpoint import load_zo_lstm

        return load_zo_lstm(path)

    @staticmethod
    def _resolve(task: str | Task, family_kwargs: dict[str, Any]) -> tuple[TaskFamily | None, Task | None]:
        if isinstance(task, Task):
            return None, task
        if not isinstance(task, str):
            raise TypeError(f"task must be a family name or a Task instance, got {type(task).__name__}")
        return l2l.make_family(task, **family_kwargs), None

    def _pool_size(self, split: str) -> int:
        """How many instances of ``split`` resampling draws from."""
        if self.family is None:
            return 1
        n = self.family.split_size(split)
        if self.instances is None:
            return n
        if not 1 <= self.instances <= n:
            raise ValueError(
                f"instances={self.instances} must be in 1..{n} (the size of the {split!r} split)"
            )
        return self.instances

    def _instance(self, split: str, index: int) -> Task:
        """Instance ``index`` of ``split`` (built once, then cached)."""
        if self._fixed is not None:
            return self._fixed
        assert self.family is not None
        key = (split, int(index))
        if key not in self._tasks:
            self._tasks[key] = self.family.instance(*key)
        return self._tasks[key]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at the instance's x0 (``options``: ``split`` and/or ``index``)."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"split", "index"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; ZOEnv.reset accepts 'split' and 'index'")
        split = check_split(options.get("split", self.split))
        index = options.get("index", self.index)
        if index is None:
            index = int(self.np_random.integers(self._pool_size(split)))
        self.task, self.episode = self._instance(split, index), {"split": split, "index": int(index)}
        self.oracle = Oracle(self.task)
        self.x = self.task.project(self.task.x0().float())
        self.k, self._estimate = 0, None
        if self.lstm is not None:
            self._carry = self.lstm.to(self.x.device).initial_carry(self.dim)
        # torch streams for probe directions and minibatches, derived from the seeded np_random
        self._rng = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
        self._batch_rng = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
        self._new_batch()
        return self._obs(), {"queries": 0, **self.episode}

    def _new_batch(self) -> None:
        """Draw the minibatch that every query of the coming step shares (None on deterministic tasks)."""
        assert self.task is not None
        self._batch = self.task.sample_batch(self._batch_rng)
        self.oracle.set_batch(self._batch)
        self._fx: torch.Tensor | None = None

    @property
    def batch(self) -> torch.Tensor | None:
        """The minibatch the current step's queries share (None on deterministic tasks)."""
        return self._batch

    def base_value(self) -> torch.Tensor:
        """f(x_k) on this step's minibatch: queried once (1 query), then remembered for the step."""
        if self._fx is None:
            self._fx = self.oracle(self.x)[0]
        return self._fx

    def _obs(self) -> np.ndarray:
        assert self.task is not None
        return observation(self.task, self.x, self.mdp.observe, self._estimate)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        u = action_to_direction(action)  # also checks the action: its size and finite entries
        if u.shape != (self.dim,):
            raise ValueError(f"action has {u.numel()} entries; this environment's actions have {self.dim}")
        fx = self.base_value()
        # the policy's proposal in the step's form: a guided step's mean action, or the direction
        guided = self.mdp.directions == "guided"
        proposal = torch.as_tensor(np.asarray(action, dtype=np.float32)) if guided else u
        std, update = None, None
        if self.lstm is not None:  # inside the QueryRNN's distribution, and the UpdateRNN's step
            with torch.no_grad():
                std = self.lstm.query_std(self._carry)
            update = self._lstm_update
        est, mean = estimate_step(self.mdp, self.oracle, self.x, proposal, self._rng, fx=fx, std=std)
        new_x, self._estimate = finish_step(
            self.mdp, self.x, est, mean, self._estimate, self.oracle.project, update
        )
        new_f = self.oracle(new_x)[0]  # 1 query: the reward, and the next base value
        reward = float(fx - new_f) * self.reward_scale
        self.x, self.k = new_x, self.k + 1
        if self._batch is None:
            self._fx = new_f  # deterministic: f(x_{k+1}) is already the next step's base value
        else:
            self._new_batch()
        solved = self.task.success(new_x.unsqueeze(0))
        success = None if solved is None else bool(solved[0])
        terminated = bool(success) and self.terminate_on_success
        truncated = self.k >= self.steps and not terminated
        info = {"queries": self.oracle.queries, "loss": float(new_f), "success": success, **self.episode}
        return self._obs(), reward, terminated, truncated, info

    def _lstm_update(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The ZO-LSTM's UpdateRNN step from ``x`` for the estimate ``grad`` (advances its carry)."""
        assert self.lstm is not None
        with torch.no_grad():
            return self.lstm.apply_update(x, grad, self._carry, self.oracle.project)[0]

    def probe(self, action: np.ndarray, q: int) -> dict[str, Any]:
        """Algorithm 2's warm-start test at x_k: a q-direction Gaussian estimate vs the action's estimate.

        Queries the q Gaussian points and the action's point in one call (q + 1 queries; f(x_k) is the
        step's base value) and moves nothing.

        Returns:
            ``rho``: the cosine similarity (papers/003 eq. 3) of the Gaussian estimate g_hat and the
            action's two-query estimate g_tilde; ``gaussian_action``: the action along g_hat (the warm-start
            action the agent takes instead while rho is below its threshold); ``queries``: the count.
        """
        if self.task is None:
            raise RuntimeError("call reset() before probe()")
        z = gaussian_directions(q, self.dim, self._rng)
        u = action_to_direction(action).unsqueeze(0)
        fx = self.base_value().view(1)
        mu = self.mdp.mu
        assert mu is not None  # resolved
        values = self.oracle(self.x.unsqueeze(0) + mu * torch.cat([z, u]))
        g_hat = forward_estimate(torch.cat([fx, values[:q]]), z, mu).grad
        g_tilde = forward_estimate(torch.cat([fx, values[q:]]), u, mu).grad
        rho = torch.nn.functional.cosine_similarity(g_hat, g_tilde, dim=0, eps=1e-30)
        return {
            "rho": float(rho),
            "gaussian_action": direction_to_action(g_hat),
            "queries": self.oracle.queries,
        }

    def describe(self) -> dict[str, Any]:
        """The settings that define this MDP (stored with a trained policy, so it can be rebuilt; the
        MDP's part reads back with :meth:`MDPSpec.from_describe`)."""
        return {
            "task": self.task_name, "dim": self.dim, **self.mdp.as_dict(), "steps": self.steps,
            "reward_scale": self.reward_scale, "image_shape": self.image_shape,
            "terminate_on_success": self.terminate_on_success,
        }  # fmt: skip
