"""The MDP's step, written once: the environment and the ``zo_rl`` optimizer both take it from here.

A step of papers/003's MDP has two halves, split so that an optimizer can expose the first as its
``estimate`` (what :func:`l2l.diagnostics.cosine_trace` taps):

1. :func:`estimate_step`: the query directions around the policy's proposal (one direction, or the q
   directions a + z_i of a guided step; :func:`guided_directions`) and the forward-difference estimate
   over them;
2. :func:`finish_step`: the new iterate project(x - eta g) (or a ZO-LSTM's UpdateRNN step), and what the
   estimate observations show next (:func:`next_memory`).

:class:`envs.zo_env.ZOEnv` calls both with the policy's action and a remembered f(x) (its reward needs
f(x_{k+1}), which is the next step's base value), and :class:`agents.zo_rl.ZORL` with the policy's
proposal, or None on the steps its coin gives to a Gaussian direction, querying f(x) with the probes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from envs.mdp import TREND_DECAY, TREND_MODES
from envs.spec import MDPSpec
from l2l.estimators import (
    Estimate,
    Objective,
    forward_difference,
    forward_estimate,
    gaussian_directions,
    update_trend,
)


def guided_directions(action: torch.Tensor, q: int, rng: torch.Generator) -> torch.Tensor:
    """The q directions [q, d] of a guided step: the action (the policy's mean) plus N(0, I) noise each.

    papers/003 sec. 3 draws the perturbations of an iteration as the policy's output plus Gaussian
    exploration noise. The action enters as it is, a point of Box(-1, 1)^d: its size against the unit
    noise says how strongly it biases the directions (E[u u^T] = I + a a^T), and the zero action gives
    ZO-SGD's directions exactly.
    """
    a = torch.as_tensor(action, dtype=torch.float32).detach().flatten().to(rng.device)
    return a.unsqueeze(0) + gaussian_directions(q, a.numel(), rng)


def step_directions(
    mdp: MDPSpec, proposal: torch.Tensor | None, x: torch.Tensor, rng: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(the guided mean, the query directions [k, d]) of a step at iterate ``x``.

    Args:
        mdp: the resolved MDP (its direction form and q).
        proposal: what the policy proposes in the step's form: a guided step's mean action a [d], or a
            single step's direction u [d] (norm sqrt(d)); None for a step without the policy (the zero
            mean, ZO-SGD's directions; or one standard Gaussian direction).
        x: the iterate [d] (its size and device).
        rng: draws the noise.

    Returns:
        The mean (None for a single-direction step, which has none) and the directions.
    """
    if mdp.directions == "guided":
        mean = torch.zeros_like(x) if proposal is None else proposal
        return mean, guided_directions(mean, int(mdp.q or 1), rng)
    if proposal is None:
        return None, gaussian_directions(1, x.shape[0], rng)
    return None, proposal.unsqueeze(0)


def estimate_step(
    mdp: MDPSpec,
    f: Objective,
    x: torch.Tensor,
    proposal: torch.Tensor | None,
    rng: torch.Generator,
    fx: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> tuple[Estimate, torch.Tensor | None]:
    """The first half of a step: the forward-difference estimate along :func:`step_directions`.

    Args:
        mdp: the resolved MDP.
        f: the objective (an oracle): queried once, for the probes (and f(x) unless given).
        x: the iterate [d].
        proposal: the policy's proposal, or None (see :func:`step_directions`).
        rng: draws the noise.
        fx: f(x) on this step's minibatch when the caller already holds it (the environment: then the
            probes alone are queried); None queries it with the probes, in one call.
        std: inside a ZO-LSTM, its QueryRNN's std [d]: the directions become s * u.

    Returns:
        The estimate and the step's guided mean (None for a single step), which :func:`finish_step`
        reads for the trend.
    """
    mean, u = step_directions(mdp, proposal, x, rng)
    if std is not None:
        u = u * std
    assert mdp.mu is not None, "the MDP must be resolved (MDPSpec.resolve)"
    if fx is None:
        return forward_difference(f, x, u, mdp.mu), mean
    return forward_estimate(torch.cat([fx.view(1), f(x.unsqueeze(0) + mdp.mu * u)]), u, mdp.mu), mean


def finish_step(
    mdp: MDPSpec,
    x: torch.Tensor,
    est: Estimate,
    mean: torch.Tensor | None,
    memory: torch.Tensor | None,
    project: Callable[[torch.Tensor], torch.Tensor],
    update: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The second half of a step: (the next iterate, what the estimate observations show next).

    Args:
        mdp: the resolved MDP (eta, and the observation that says what to remember).
        x: the iterate [d].
        est: the step's estimate (:func:`estimate_step`).
        mean: the step's guided mean (None for a single step).
        memory: what the estimate channel showed before this step (None: nothing yet).
        project: maps the stepped iterate onto the feasible set (``oracle.project``).
        update: inside a ZO-LSTM, its step (x, estimate) -> next iterate, instead of x - eta g.
    """
    if update is not None:
        new_x = update(x, est.grad)
    else:
        assert mdp.eta is not None, "the MDP must be resolved (MDPSpec.resolve)"
        new_x = project(x - mdp.eta * est.grad)
    return new_x, next_memory(mdp.observe, est, mean, memory)


def next_memory(
    observe: str, est: Estimate, mean: torch.Tensor | None, memory: torch.Tensor | None
) -> torch.Tensor:
    """What the estimate channel shows after the step that made ``est`` around ``mean``.

    The trend modes update the running mean ``memory`` (None: zeros) with the estimate's
    :func:`l2l.estimators.fresh_part` (they need guided steps, which have a mean); the other modes
    show the estimate itself.
    """
    if observe not in TREND_MODES:
        return est.grad
    assert mean is not None, "the trend follows guided steps, which have a mean"
    return update_trend(memory, est, mean, TREND_DECAY)
