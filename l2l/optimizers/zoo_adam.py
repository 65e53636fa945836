"""ZOO-Adam (papers/001 Alg. 2): coordinatewise Adam on symmetric-difference estimates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from l2l.optimizers.core.base import ZOState, check_betas
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.zoo import CoordinateEstimate, ZOOBase
from l2l.oracle import Oracle
from l2l.tasks.base import Task

SuccessFn = Callable[[torch.Tensor], bool]


def success_callback(task: Task) -> SuccessFn:
    """A ``success_fn`` for ZOO-Adam from a task's ``success`` (e.g. the attack fools the model).

    A score-based attacker reads success off the model output of the base query f(x) it pays for
    anyway, so the optimizer's check is not charged, just as ``l2l.run`` does not charge its own.
    """
    if task.success(task.x0().unsqueeze(0)) is None:
        raise ValueError(
            f"{type(task).__name__} defines no success; reset Adam on a schedule (reset_at) instead"
        )
    return lambda x: bool(task.success(x.unsqueeze(0))[0])


@register_optimizer("zoo_adam")
@dataclass
class ZOOAdam(ZOOBase):
    """Adam moments kept per coordinate, each with its own step count T_i (updated only when sampled).

    Args (besides those of :class:`~l2l.optimizers.core.zoo.ZOOBase`):
        beta1: decay of the first moment (papers/001: 0.9).
        beta2: decay of the second moment (papers/001: 0.999).
        eps: added to the root of the second moment (papers/001: 1e-8).
        reset_at: steps at which every Adam moment and count restarts from zero (a user-chosen
            schedule; papers/001 resets once, at the first successful attack).
        success_fn: optional ``x -> bool``; Adam state restarts before the first step whose iterate it
            calls successful (papers/001's "reset Adam states"). The oracle's loss cannot tell: the
            margin part of the attack loss is hidden in the total. Build it with
            :func:`success_callback`. Not part of :meth:`config` (a function is not JSON).
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    reset_at: tuple[int, ...] = ()
    success_fn: SuccessFn | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_betas(self.beta1, self.beta2)
        self.reset_at = tuple(self.reset_at)
        if any(not isinstance(s, int) or s < 0 for s in self.reset_at):
            raise ValueError(f"reset_at={self.reset_at} must hold step numbers (integers >= 0)")

    def init_coordinate_state(self, state: ZOState, size: int) -> None:
        state.slots["m"] = torch.zeros(size, dtype=state.x.dtype, device=state.x.device)
        state.slots["v"] = torch.zeros(size, dtype=state.x.dtype, device=state.x.device)
        state.slots["t"] = torch.zeros(size, dtype=torch.long, device=state.x.device)
        state.slots.setdefault("resets", [])

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        if self._should_reset(state):
            state.slots["resets"].append(state.step)
            self.init_coordinate_state(state, state.slots["y"].numel())
        return super().step(state, oracle)

    def _should_reset(self, state: ZOState) -> bool:
        """At a scheduled step, or at the first iterate ``success_fn`` calls successful."""
        return self._first_success(state) or state.step in self.reset_at

    def _first_success(self, state: ZOState) -> bool:
        """Whether the iterate is the first that ``success_fn`` calls successful (checked until then)."""
        if self.success_fn is None or state.slots.get("succeeded"):
            return False
        state.slots["succeeded"] = bool(self.success_fn(state.x))
        return state.slots["succeeded"]

    def coordinate_update(
        self, state: ZOState, coords: torch.Tensor, est: CoordinateEstimate
    ) -> torch.Tensor:
        m, v, t = (state.slots[k] for k in ("m", "v", "t"))
        g = est.grad.to(m.dtype)
        m[coords] = self.beta1 * m[coords] + (1 - self.beta1) * g
        v[coords] = self.beta2 * v[coords] + (1 - self.beta2) * g * g
        t[coords] += 1
        m_hat = m[coords] / (1 - self.beta1 ** t[coords])
        v_hat = v[coords] / (1 - self.beta2 ** t[coords])
        return state.slots["y"][coords] - self.lr * m_hat / (v_hat.sqrt() + self.eps)

    def config(self) -> dict:
        return {k: v for k, v in super().config().items() if k != "success_fn"}
