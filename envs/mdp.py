"""The pieces of the papers/003 MDP that the environment and the trained policy's optimizer share.

- **Action -> direction.** An action is a point of Box(-1, 1)^d; the query direction is that vector
  rescaled to norm sqrt(d), the typical norm of a standard Gaussian direction (E||z||^2 = d). So a
  policy and ZO-GS's N(0, I) queries probe at the same distance mu * sqrt(d), and a step along a
  Gaussian-looking action costs what a q = 1 ZO-SGD step costs. Only the action's direction matters:
  a and 2a are the same action, which keeps tanh saturation from changing the step.
- **Observation.** The state of papers/003 is the point x_k. By default that is the task's iterate
  (``observe="iterate"``). For attack tasks (:attr:`Task.perturbs_image`: the classifier attacks and
  the order attack), ``observe="image"`` shows the attacked image
  clamp(image + delta) instead: papers/003 eq. 9 optimizes the image itself, while l2l's
  :class:`~l2l.tasks.AttackTask` optimizes the perturbation delta, which alone does not say which
  image is attacked (every episode starts at delta = 0). The clean image is the attacker's own input,
  so showing it costs no query and leaks no gradient. ``observe="image_delta"`` adds a second
  channel, the perturbation divided by its largest magnitude: a trained image-only policy changes its
  direction very little as delta grows (consecutive directions of the shipped MNIST policy are nearly
  parallel; docs/results/zo_rl.md), because delta is a small change of the image, so it searches along
  nearly one line.
- **The last estimate** (papers/003's issue of tracking the gradient; our option). ``iterate_estimate``
  and ``image_estimate`` add a second channel to ``iterate`` or ``image``: the ZO estimate of the
  previous step divided by its largest magnitude (zero before the first step). The optimizer computed
  it from its own queries, so it costs none and stays black-box; a policy that copies it follows the
  last estimate, and one that remembers it cannot, since the policy is memoryless.
  ``image_delta_estimate`` stacks all three channels: the image, the perturbation and the estimate.
  Why: a policy of the image and delta alone changes its direction more slowly than the gradient
  turns, so the error of its mean is the same from step to step, which costs more than its cosine
  gains (the ``held`` rows of ``eval.policy_bound``); the estimate brings fresh information each step.
- **The trend** (our option). ``iterate_trend`` and ``image_trend`` add, instead of the last estimate,
  a running mean (decay :data:`TREND_DECAY`) of the *fresh parts* of the past guided estimates
  (:func:`l2l.estimators.fresh_part`), over its largest magnitude. Why not the estimates themselves:
  a guided estimate over u_i = a + z_i has mean (I + a a^T) g, so a mean of estimates leans towards
  the policy's own past actions, and a policy that follows it feeds on itself (docs/results/zo_rl.md sets
  the ``ema`` rows of ``eval.policy_bound`` beside the ``trend`` rows). The fresh part uses only the
  noise z_i and has mean g whatever a is, so the trend is a running mean of unbiased gradient
  estimates, which a policy may follow without feeding on itself; the ``trend`` rows of
  ``eval.policy_bound`` and the hand-made optimizer ``zo_trend`` follow it. It needs guided
  directions (a single-direction step has no noise part).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from l2l.estimators import Estimate, gaussian_directions, update_trend
from l2l.tasks.base import Task

Observe = Literal[
    "iterate", "image", "image_delta", "iterate_estimate", "image_estimate", "image_delta_estimate",
    "iterate_trend", "image_trend",
]  # fmt: skip
OBSERVE_MODES: tuple[str, ...] = get_args(Observe)
#: the modes whose last channel is the running mean of the fresh parts of the past estimates
TREND_MODES: tuple[str, ...] = ("iterate_trend", "image_trend")
#: the modes whose last channel comes from the past ZO estimates: the last one, or the trend
ESTIMATE_MODES: tuple[str, ...] = ("iterate_estimate", "image_estimate", "image_delta_estimate", *TREND_MODES)
#: the trend's decay per step (chosen on binary_classification val with eval.policy_bound's trend rows)
TREND_DECAY = 0.99
#: the modes with the normalized perturbation as a channel after the image
DELTA_MODES: tuple[str, ...] = ("image_delta", "image_delta_estimate")
#: how an action becomes a step's query directions: one direction (the first build), or the paper's q
#: directions pi(x) + N(0, I) (papers/003 sec. 3; :func:`guided_directions`)
DIRECTION_MODES: tuple[str, ...] = ("single", "guided")


def check_directions(directions: str, q: int | None) -> None:
    """``directions`` must be a mode of :data:`DIRECTION_MODES`; ``guided`` needs q >= 1 (or None)."""
    if directions not in DIRECTION_MODES:
        raise ValueError(f"directions={directions!r} must be one of {', '.join(DIRECTION_MODES)}")
    if q is not None and q < 1:
        raise ValueError(f"q={q} must be >= 1 (query directions per guided step)")


def guided_directions(action: torch.Tensor, q: int, rng: torch.Generator) -> torch.Tensor:
    """The q directions [q, d] of a guided step: the action (the policy's mean) plus N(0, I) noise each.

    papers/003 sec. 3 draws the perturbations of an iteration as the policy's output plus Gaussian
    exploration noise. The action enters as it is, a point of Box(-1, 1)^d: its size against the unit
    noise says how strongly it biases the directions (E[u u^T] = I + a a^T), and the zero action gives
    ZO-SGD's directions exactly.
    """
    a = torch.as_tensor(action, dtype=torch.float32).detach().flatten().to(rng.device)
    return a.unsqueeze(0) + gaussian_directions(q, a.numel(), rng)


def action_to_direction(action: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The float32 query direction [d] of an action [d]: the action rescaled to norm sqrt(d).

    The all-zero action has no direction; it maps to the zero vector (the step then does not move).
    """
    a = torch.as_tensor(np.asarray(action, dtype=np.float32) if isinstance(action, np.ndarray) else action)
    a = a.detach().float().flatten()
    norm = a.norm()
    if not bool(torch.isfinite(norm)):
        raise ValueError(
            f"the action has non-finite entries ({int((~torch.isfinite(a)).sum())} of {a.numel()})"
        )
    if float(norm) == 0.0:
        return torch.zeros_like(a)
    return a * (a.numel() ** 0.5 / norm)


def direction_to_action(direction: torch.Tensor) -> np.ndarray:
    """The action in Box(-1, 1)^d that :func:`action_to_direction` maps back onto ``direction``'s ray.

    Dividing by the largest entry keeps every coordinate in [-1, 1] and the direction unchanged.
    """
    top = direction.detach().abs().max()
    scaled = direction.detach() / top if float(top) > 0 else torch.zeros_like(direction)
    return scaled.float().clamp(-1.0, 1.0).numpy().astype(np.float32)


def next_memory(observe: str, est: Estimate, mean: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
    """What the estimate channel shows after the step that made ``est`` around ``mean``.

    The trend modes update the running mean ``memory`` (None: zeros) with the estimate's
    :func:`l2l.estimators.fresh_part`; the other modes show the estimate itself.
    """
    if observe not in TREND_MODES:
        return est.grad
    return update_trend(memory, est, mean, TREND_DECAY)


def check_trend(observe: str, directions: str) -> None:
    """The trend modes follow the noise of guided steps, so they need ``directions="guided"``."""
    if observe in TREND_MODES and directions != "guided":
        raise ValueError(
            f"observe={observe!r} follows the noise of guided steps: "
            "use directions='guided' (--directions guided)"
        )


def check_observe(observe: str, task: Task, directions: str) -> str:
    """``observe`` checked against the task and the ``directions`` mode: the image modes need a task
    that perturbs an image, and the trend modes guided directions.

    That is :attr:`Task.perturbs_image` (an ``image`` and ``adversarial(X)``): the classifier attacks and
    the order attack.
    """
    if observe not in OBSERVE_MODES:
        raise ValueError(f"observe={observe!r} must be one of {', '.join(OBSERVE_MODES)}")
    check_trend(observe, directions)
    if observe.startswith("image") and not task.perturbs_image:
        raise ValueError(
            f"observe={observe!r} needs a task that perturbs an image (Task.perturbs_image, with an "
            f"adversarial(X) method); {type(task).__name__} is none: use observe='iterate'"
        )
    return observe


def observation_channels(observe: str) -> int:
    """How many d-vectors an observation stacks: the point, then the delta and the estimate if shown."""
    return 1 + (observe in DELTA_MODES) + (observe in ESTIMATE_MODES)


def observation(
    task: Task | None, x: torch.Tensor, observe: str = "iterate", estimate: torch.Tensor | None = None
) -> np.ndarray:
    """The flat float32 observation of iterate ``x``: [d] per channel, stacked (module docstring).

    Args:
        task: the task (the image modes read its image; the iterate modes need none).
        x: the iterate [d].
        observe: one of :data:`OBSERVE_MODES`.
        estimate: the previous step's ZO estimate [d] for the estimate modes (None: no step yet).
    """
    with torch.no_grad():
        if observe.startswith("iterate"):
            point = x
        else:
            if task is None:
                raise ValueError(f"observe={observe!r} shows the attacked image, so it needs the task")
            point = task.adversarial(x.unsqueeze(0))[0].flatten()  # type: ignore[attr-defined]
        if observe in DELTA_MODES:
            point = torch.cat([point, by_largest(x)])
        if observe in ESTIMATE_MODES:
            point = torch.cat([point, by_largest(torch.zeros_like(x) if estimate is None else estimate)])
    return point.detach().float().flatten().cpu().numpy().astype(np.float32, copy=True)


def by_largest(v: torch.Tensor) -> torch.Tensor:
    """``v`` over its largest magnitude (entries in [-1, 1]); the zero vector stays zero."""
    top = v.detach().abs().max()
    return v.detach().to(torch.float32) / top if float(top) > 0 else torch.zeros_like(v, dtype=torch.float32)


def observed_image_shape(task: Task, observe: str) -> tuple[int, ...] | None:
    """The (channels, height, width) of the observation, or None when it is a plain vector."""
    shape = image_shape(task)
    if shape is None or observe == "iterate":
        return shape
    return (shape[0] * observation_channels(observe), *shape[1:])


def image_shape(task: Task) -> tuple[int, ...] | None:
    """The (channels, height, width) the iterate has as an image, or None for a plain vector.

    Attack tasks perturb an image (:attr:`Task.image_shape`); the agent's networks then use
    convolutions over this shape, so an image that is not (C, H, W) counts as a plain vector.
    """
    shape = task.image_shape
    return shape if shape is not None and len(shape) == 3 else None
