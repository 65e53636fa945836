"""P-RGF (Cheng, Dong, Pang, Su, Zhu; NeurIPS 2019): random gradient-free estimates biased toward a prior.

The prior v is the gradient of the summed margin of the attacked data set's zoo surrogates
(:class:`~l2l.optimizers.core.surrogates.SurrogateEnsemble`; free, and the attacked model is left out of
the ensemble where it is itself a surrogate, so the target is never differentiated), normalized to RMS 1
(||v|| = sqrt(d)). Each iteration at the iterate x, whose f(x) is known:

1. **Gradient norm** (iterations 0, 3, 10, 20, ...: every ``norm_every``-th and the code's iteration 3):
   ||grad f||^2 ~ mean over ``norm_samples`` Gaussian directions u, RMS-normalized, of
   ((f(x + sigma u) - f(x)) / sigma)^2 (an RMS-1 u has ||u||^2 = d, so E[(grad . u)^2] = ||grad||^2); the
   value is kept until the next estimate.
2. **Prior probe**, 1 query: alpha = (f(x + sigma v) - f(x)) / sigma / (||v|| ||grad f||), the estimated
   cosine of v to the true gradient; alpha < 0 flips v (and alpha).
3. **lambda** (:func:`best_lambda`), the weight of v in each direction that maximizes the expected cosine
   of the estimate to the gradient, from alpha, d and q (the paper's closed form; 0, plain RGF, when
   alpha^2 (d + 2q - 2) < 1).
4. **Estimate**: lambda = 1 takes v itself (no query). Otherwise q Gaussian directions, their component
   along v removed, RMS-normalized to xi_i; u_i = sqrt(1 - lambda) xi_i + sqrt(lambda) v; q queries at
   x + sigma u_i; g = mean_i ((f_i - f(x)) / sigma) u_i.
5. **Step** against g (the margin is minimized; the paper's loss is maximized): L-inf
   x <- proj(x - step_fraction * eps * sign(g)); L2 x <- proj(x - step_fraction * eps * g / ||g||), a move
   of L2 length step_fraction * eps. Then 1 query of f at the new x, which the next iteration uses.

**Two steps per iteration**, so that every step's cost is known before it starts (``l2l.run`` stops
before a step that would exceed the budget, and announced must equal spent): the number of queries of
the estimate (q, or 0 when lambda = 1) is only known after the prior probe. A **probe step** runs 1-3
and costs ``norm_samples`` (in a norm iteration) + 1, plus 1 for f(x0) on the very first step; a **move
step** runs 4-5 and costs q + 1, or 1 when lambda = 1. The queries and their order are the reference
code's; only the step boundaries are ours, so ``steps`` counts half-iterations.

Settings, from the reference code (thu-ml/Prior-Guided-RGF), which attacks 299 px ImageNet images on
the [0, 1] scale: q = 50 directions, sigma = 1e-4, 10 directions for the norm estimate every 10
iterations and at iteration 3. Its L-inf step is lr = 0.005 at eps = 0.05, a tenth of eps; its L2 step
``lr * final / RMS(final)`` with lr = 2 / sqrt(d) moves L2 length 2.0, at eps = sqrt(1e-3 d) = 16.4: 0.12
eps. ``step_fraction`` = 0.1 takes the L-inf fraction for both norms.

Where we differ from the code:

- The code doubles sigma while a difference is exactly 0 (and multiplies it by 5 when the whole
  estimate is 0), and every other iteration spends 2 queries checking whether sigma can go back to 1e-4.
  Our losses are continuous log-probability margins, so we keep sigma fixed and skip both.
- The code's estimate omits the 1 / sigma (its step normalizes the estimate anyway); ours keeps it, so g
  estimates the gradient itself. No decision changes.
- The prior: the code differentiates one surrogate's (ResNet-152's) loss; ours is the summed margin of
  the zoo's surrogates, the loss the target's queries return.
- As in the code, the finite-difference points x + sigma u are not projected (a projection onto the ball
  would cut the differences of every coordinate at its bound); the task clamps each queried image to
  [0, 1], and only the iterates are projected.
- Query count: the code charges f(x0) and f at each iterate it steps from, not f at the final
  (successful) iterate, whose prediction it reads for the stop; we charge every query, that one
  included, so a success costs 1 query more here than in the code's count.

Success checks: f at every iterate is queried by the move step that produced it (and f(x0) by the first
step), so the attacker always knows whether its iterate succeeded without an extra query.
``evaluates_iterate`` is therefore True, the closest setting of eval.attack_table's convention: it
charges 1 check query for the final iterate, one more than P-RGF needs (as for SimBA and the search
attacks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.optimizers.core.surrogates import ALL_SURROGATES, SurrogateEnsemble, check_surrogate_names, task_zoo
from l2l.oracle import Oracle

#: the reference code's extra norm-estimate iteration (its ``start_iter``), besides every norm_every-th
EXTRA_NORM_ITERATION = 3
#: guards the normalizations against a zero vector (the reference code's 1e-12)
TINY = 1e-12


def best_lambda(alpha: float, dim: int, q: int) -> float:
    """The weight lambda of the prior in each direction, for an estimated cosine ``alpha``.

    The paper's lambda* = (1 - a^2)(1 - a^2 (d + 2q - 2)) / (a^4 d (d + 2q - 2) - 2 a^2 d q + 1) where
    that lies strictly between 0 and 1; otherwise 0 when a^2 (d + 2q - 2) < 1 (the prior is too poor:
    plain RGF) and 1 when not (the prior alone beats any mix); and 1 whenever |a| >= 1. In float64.

    Args:
        alpha: the estimated cosine between the prior and the true gradient (>= 0 after the flip).
        dim: d, the dimension of the variable.
        q: the number of query directions of the estimate.
    """
    if abs(alpha) >= 1:
        return 1.0
    a2 = float(alpha) ** 2
    spread = dim + 2 * q - 2
    denominator = a2 * a2 * dim * spread - 2 * a2 * dim * q + 1
    if denominator != 0:
        value = (1 - a2) * (1 - a2 * spread) / denominator
        if 0 < value < 1:
            return value
    return 0.0 if a2 * spread < 1 else 1.0


def rms_normalized(rows: torch.Tensor) -> torch.Tensor:
    """Each row of ``rows`` ([n, d] or [d]) scaled to root-mean-square 1, i.e. L2 norm sqrt(d)."""
    rms = rows.square().mean(dim=-1, keepdim=True).sqrt()
    return rows / rms.clamp_min(TINY)


@register_optimizer("prgf")
@dataclass
class PRGF(ZOOptimizer):
    """P-RGF: prior-guided random gradient-free PGD on the target's margin (module docstring).

    Args:
        surrogates: the zoo surrogates whose summed-margin gradient is the prior, comma-separated, or
            ``all`` (every surrogate of the attacked data set's zoo); a held-out target is an error. The
            attacked model, where it is itself a surrogate (the default ``cw``), is left out, so the
            attack never differentiates its target.
        q: random directions of the estimate (the code's ``samples_per_draw``, 50).
        sigma: the finite-difference step along RMS-1 directions on the [0, 1] image scale (1e-4).
        step_fraction: each PGD step as a fraction of eps: per coordinate (L-inf) or in L2 length (L2).
            Not ``step``, the protocol's method.
        norm_every: iterations between gradient-norm estimates (the code's 10; iteration 3 also has one).
        norm_samples: random directions per gradient-norm estimate (the code's 10).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"ball", "image", "zoo"})

    surrogates: str = ALL_SURROGATES
    q: int = 50
    sigma: float = 1e-4
    step_fraction: float = 0.1
    norm_every: int = 10
    norm_samples: int = 10

    def __post_init__(self) -> None:
        for name in ("q", "norm_every", "norm_samples"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name}={value!r} must be an int >= 1")
        for name in ("sigma", "step_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name}={value!r} must be > 0")
        check_surrogate_names(self.surrogates)

    # --- costs ---------------------------------------------------------------------------------------

    def queries_per_step(self, dim: int) -> int:
        """A typical step, rounded up: half of an iteration's 1 + q + 1 (probe, directions, new iterate)
        outside the norm-estimate iterations."""
        return math.ceil((self.q + 2) / 2)

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        slots = state.slots
        if slots.get("phase", "probe") == "move":
            return (0 if slots["lam"] == 1 else self.q) + 1
        first = "fx" not in slots
        return int(first) + (self.norm_samples if self.norm_due(slots.get("iteration", 0)) else 0) + 1

    def norm_due(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (from 0) re-estimates the gradient norm."""
        return iteration % self.norm_every == 0 or iteration == EXTRA_NORM_ITERATION

    @property
    def evaluates_iterate(self) -> bool:
        """True: f at every iterate is queried when it is reached (module docstring, "Success checks")."""
        return True

    # --- steps ---------------------------------------------------------------------------------------

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        if state.slots.get("phase", "probe") == "probe":
            self.probe(state, oracle)
        else:
            self.move(state, oracle)
        state.fx = state.slots["fx_before"]
        state.step += 1
        return state

    def setup(self, state: ZOState, oracle: Oracle) -> None:
        """Load the surrogate ensemble of the task's zoo, less the attacked model (before any query)."""
        task, zoo = oracle.task, task_zoo(oracle.task)
        if zoo is None or getattr(task, "image", None) is None or getattr(task, "label", None) is None:
            raise ValueError(
                f"prgf needs a classifier attack from a family with a target-model zoo (its image, label "
                f"and surrogates), e.g. mnist_attack_linf or fashion_attack_l2; got {type(task).__name__}"
            )
        ensemble = SurrogateEnsemble(zoo, self.surrogates, exclude=getattr(task, "model_name", None))
        state.slots.update(ensemble=ensemble, iteration=0)

    def probe(self, state: ZOState, oracle: Oracle) -> None:
        """Steps 1-3: the prior at x, the gradient norm when due, the probe along v, alpha and lambda."""
        slots, x = state.slots, state.x
        if "ensemble" not in slots:
            self.setup(state, oracle)
        task = oracle.task
        prior = rms_normalized(slots["ensemble"].gradient(task.image, x, task.label).to(x.dtype))
        due = self.norm_due(slots["iteration"])
        directions = (
            rms_normalized(torch.randn(self.norm_samples, x.shape[0], generator=state.rng, device=x.device))
            if due
            else x.new_zeros((0, x.shape[0]))
        )
        # one oracle call: f(x0) on the first step, the norm directions when due, the probe along v
        rows = [x.unsqueeze(0)] if "fx" not in slots else []
        rows += [x + self.sigma * directions, (x + self.sigma * prior).unsqueeze(0)]
        values = oracle(torch.cat(rows))
        if "fx" not in slots:
            slots["fx"], values = values[0], values[1:]
        fx = slots["fx"]
        if due:
            slots["norm_square"] = float((((values[:-1] - fx) / self.sigma) ** 2).mean())
        slope = float(values[-1] - fx) / self.sigma
        scale = math.sqrt(float(prior.square().sum()) * slots["norm_square"])
        alpha = slope / max(scale, TINY)
        if alpha < 0:
            prior, alpha = -prior, -alpha
        slots.update(
            prior=prior,
            alpha=alpha,
            lam=best_lambda(alpha, x.shape[0], self.q),
            phase="move",
            fx_before=fx,
        )

    def move(self, state: ZOState, oracle: Oracle) -> None:
        """Steps 4-5: the estimate (none when lambda = 1), the PGD step and f at the new iterate."""
        slots, x = state.slots, state.x
        prior, lam, fx = slots["prior"], slots["lam"], slots["fx"]
        if lam == 1:
            estimate = prior
        else:
            xi = torch.randn(self.q, x.shape[0], generator=state.rng, device=x.device)
            # remove each direction's component along the prior, then back to RMS 1
            along = xi @ prior / prior.square().sum().clamp_min(TINY)
            xi = rms_normalized(xi - along.unsqueeze(1) * prior)
            directions = math.sqrt(1 - lam) * xi + math.sqrt(lam) * prior
            values = oracle(x + self.sigma * directions)
            estimate = ((values - fx) / self.sigma) @ directions / self.q
        ball = oracle.task.ball
        size = self.step_fraction * ball.eps
        if ball.norm == "linf":
            move = estimate.sign()
        else:
            move = estimate / torch.linalg.vector_norm(estimate).clamp_min(TINY)
        state.x = oracle.project(x - size * move)
        slots.update(fx=oracle(state.x)[0], fx_before=fx, phase="probe", iteration=slots["iteration"] + 1)

    def config(self) -> dict:
        return asdict(self)
