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
    TREND_MODES,
    action_to_direction,
    check_directions,
    check_observe,
    direction_to_action,
    guided_directions,
    next_memory,
    observation,
    observation_channels,
    observed_image_shape,
)
from l2l.estimators import check_mu, forward_estimate, gaussian_directions
from l2l.optimizers import tuned_params
from l2l.oracle import Oracle
from l2l.tasks.base import Task, TaskFamily, check_split

#: smoothing radius of a family with no tuned ZO-SGD mu (DESIGN.md: 1e-4 suits float32 attacks)
FALLBACK_MU = 1e-4
#: ZO-SGD's delta and q where a family has none tuned (eta = 1 / (20 d))
FALLBACK_DELTA, FALLBACK_Q = 1.0, 20


def default_mu_eta(family: str, dim: int, directions: str = "single") -> tuple[float, float]:
    """Default (mu, eta) of a family: its tuned ZO-SGD mu, and its tuned ZO-SGD learning rate divided by q
    for one-direction steps (``directions="single"``), undivided for guided steps (q directions, as
    ZO-SGD's own).

    Why divide by q: a q-direction ZO-SGD step has E||g||^2 ~ (d + q)/q ||grad||^2, a one-direction step of
    norm sqrt(d) has d ||grad||^2 whether the direction is random or aligned with the gradient, so the
    stable learning rate shrinks by about q; a scan of that multiple on mnist_attack and
    binary_classification agrees (docs/results.md, "ZO-RL step size"). Families without tuned values get
    mu = 1e-4, eta = 1/(20 d).
    """
    params = tuned_params("zo_sgd", family)
    delta, q = float(params.get("delta", FALLBACK_DELTA)), int(params.get("q", FALLBACK_Q))
    return float(params.get("mu", FALLBACK_MU)), delta / (dim * (q if directions == "single" else 1))


def default_q(family: str) -> int:
    """The query directions of a guided step: the family's tuned ZO-SGD q (20 where none is tuned)."""
    return int(tuned_params("zo_sgd", family).get("q", FALLBACK_Q))


class ZOEnv(gym.Env):
    """The ZO-RL environment (see the module docstring).

    Args:
        task: a registered task family name, or one :class:`~l2l.tasks.base.Task` instance (then
            ``split``, ``index`` and ``instances`` are ignored).
        split: the split episodes draw instances from.
        index: the instance of ``split``; None draws one (uniformly, from the env's seeded generator)
        observe: ``iterate``, ``image`` or ``image_delta`` (attack tasks: the attacked image, alone or with
            the normalized perturbation as a second channel), or ``iterate_estimate`` /
            ``image_estimate`` / ``image_delta_estimate``, which add the previous step's ZO estimate as
            a last channel, or ``iterate_trend`` / ``image_trend`` (guided only), which add the running
            mean of the fresh parts of the past estimates instead (see :mod:`envs.mdp`).
        mu: finite-difference radius; None takes the family's tuned ZO-SGD mu (see :func:`default_mu_eta`).
        eta: learning rate of the step; None takes the family's tuned ZO-SGD learning rate over its q,
            delta / (d q) (see :func:`default_mu_eta`).
        steps: the iteration budget of an episode (truncation); the registered ids and
            ``train.ddpg_policy`` pass the family's ``default_steps``.
        instances: with ``index=None``, draw among the first ``instances`` of the split (None: all).
        reward_scale: factor on every reward (small losses, e.g. binary classification's ~1e-3
            decreases, train better scaled up); ``info`` reports the unscaled loss.
        terminate_on_success: end the episode when the iterate solves the task.
        family_kwargs: keyword arguments of the task family (e.g. ``{"dim": 8}`` for ``quadratic``).
        directions: ``single`` (the first build: the action is one direction, 2 queries per step) or
            ``guided`` (papers/003 sec. 3: the action a is the mean of the step's q directions a + z_i,
            z_i ~ N(0, I), and estimator (2) runs over them at q + 1 queries; see
            :func:`envs.mdp.guided_directions`).
        q: directions per guided step (None: the family's tuned ZO-SGD q); ignored by ``single``.
        zo_lstm: a ZO-LSTM checkpoint to step inside (papers/003 sec. 3.3's ZO-RL-LSTM; guided only):
            the q directions become s * (a + z_i), s the trained QueryRNN's std, and the trained
            UpdateRNN turns the estimate into the step (``eta`` is unused); q and mu are the ZO-LSTM's.
        render_mode: only None (nothing to render).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(
        self,
        task: str | Task = "mnist_attack",
        split: str = "train",
        index: int | None = None,
        mu: float | None = None,
        eta: float | None = None,
        steps: int = 200,
        instances: int | None = None,
        observe: str = "iterate",
        reward_scale: float = 1.0,
        terminate_on_success: bool = True,
        family_kwargs: dict[str, Any] | None = None,
        directions: str = "single",
        q: int | None = None,
        zo_lstm: str | None = None,
        render_mode: str | None = None,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: ZOEnv renders nothing; pass None")
        if steps < 1:
            raise ValueError(f"steps={steps} must be >= 1 (the iteration budget of an episode)")
        if not reward_scale > 0:
            raise ValueError(f"reward_scale={reward_scale!r} must be > 0")
        check_directions(directions, q)
        if zo_lstm and observe in TREND_MODES:  # before loading: the refusal does not need the file
            raise ValueError(
                f"observe={observe!r} is not available inside a ZO-LSTM (--zo-lstm); its ZO-RL-LSTM does not "
                "pass the policy the past estimates"
            )
        self.family, self._fixed = self._resolve(task, family_kwargs or {})
        self.split, self.index, self.instances = check_split(split), index, instances
        self._tasks: dict[tuple[str, int], Task] = {}
        first = self._fixed or self._instance(self.split, 0 if index is None else index)
        self._pool_size(self.split)  # fail now on a bad ``instances``
        self.dim = first.dim
        self.task_name = task if isinstance(task, str) else (first.family or type(first).__name__)
        self.directions = directions
        self.zo_lstm, self.lstm = zo_lstm, self._load_lstm(zo_lstm, directions, q)
        if self.lstm is not None:
            q = self.lstm.q
            mu = self.lstm.mu if mu is None else mu
        self.q = (default_q(self.task_name) if q is None else int(q)) if directions == "guided" else 1
        tuned_mu, tuned_eta = default_mu_eta(self.task_name, self.dim, directions)
        self.mu = check_mu(tuned_mu if mu is None else mu)
        self.eta = tuned_eta if eta is None else float(eta)
        if not self.eta > 0:
            raise ValueError(f"eta={eta!r} must be > 0 (the learning rate of a step)")
        self.steps, self.reward_scale = steps, float(reward_scale)
        self.terminate_on_success = terminate_on_success
        self.observe = check_observe(observe, first, directions)
        self.image_shape = observed_image_shape(first, self.observe)
        obs_dim = self.dim * observation_channels(self.observe)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.dim,), dtype=np.float32)
        self.task: Task | None = None

    @staticmethod
    def _load_lstm(path: str | None, directions: str, q: int | None) -> Any:
        """The frozen ZO-LSTM to step inside, or None (see ``zo_lstm``)."""
        if path is None:
            return None
        if directions != "guided":
            raise ValueError(f"zo_lstm={path!r} steps the guided form's directions; pass directions='guided'")
        from l2l.learned.checkpoint import load_zo_lstm

        lstm = load_zo_lstm(path)
        if lstm.directions != "query" or (q is not None and int(q) != lstm.q):
            raise ValueError(
                f"zo_lstm={path!r} must sample along its QueryRNN (directions 'query', it has "
                f"{lstm.directions!r}) and sets q itself (q={lstm.q}; leave q unset)"
            )
        return lstm

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
        return observation(self.task, self.x, self.observe, self._estimate)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        u = action_to_direction(action)  # also checks the action: its size and finite entries
        if u.shape != (self.dim,):
            raise ValueError(f"action has {u.numel()} entries; this environment's actions have {self.dim}")
        fx = self.base_value()
        mean = torch.as_tensor(np.asarray(action, dtype=np.float32))  # a guided step's mean action
        u = guided_directions(mean, self.q, self._rng) if self.directions == "guided" else u.unsqueeze(0)
        if self.lstm is not None:
            with torch.no_grad():
                u = u * self.lstm.query_std(self._carry)  # inside the QueryRNN's distribution
        probe = self.oracle(self.x.unsqueeze(0) + self.mu * u)  # 1 query, or q (guided)
        est = forward_estimate(torch.cat([fx.view(1), probe]), u, self.mu)
        new_x = self._stepped(est.grad)
        new_f = self.oracle(new_x)[0]  # 1 query: the reward, and the next base value
        reward = float(fx - new_f) * self.reward_scale
        self._estimate = next_memory(self.observe, est, mean, self._estimate)  # the trend modes read mean
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

    def _stepped(self, grad: torch.Tensor) -> torch.Tensor:
        """The next iterate: x - eta * grad, or the ZO-LSTM's UpdateRNN step inside ``zo_lstm``."""
        if self.lstm is None:
            return self.oracle.project(self.x - self.eta * grad)
        with torch.no_grad():
            return self.lstm.apply_update(self.x, grad, self._carry, self.oracle.project)[0]

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
        values = self.oracle(self.x.unsqueeze(0) + self.mu * torch.cat([z, u]))
        g_hat = forward_estimate(torch.cat([fx, values[:q]]), z, self.mu).grad
        g_tilde = forward_estimate(torch.cat([fx, values[q:]]), u, self.mu).grad
        rho = torch.nn.functional.cosine_similarity(g_hat, g_tilde, dim=0, eps=1e-30)
        return {
            "rho": float(rho),
            "gaussian_action": direction_to_action(g_hat),
            "queries": self.oracle.queries,
        }

    def describe(self) -> dict[str, Any]:
        """The settings that define this MDP (stored with a trained policy, so it can be rebuilt)."""
        return {
            "task": self.task_name, "dim": self.dim, "mu": self.mu, "eta": self.eta, "steps": self.steps,
            "observe": self.observe, "reward_scale": self.reward_scale, "image_shape": self.image_shape,
            "terminate_on_success": self.terminate_on_success, "directions": self.directions, "q": self.q,
            "zo_lstm": self.zo_lstm,
        }  # fmt: skip
