"""CMA-ES (Hansen & Ostermeier, 2001; Hansen, 2016 tutorial), wrapping pycma (PyPI package ``cma``).

The algorithm is pycma's ``CMAEvolutionStrategy`` with its default settings (active CMA, cumulative
step-size adaptation, full covariance); this module only adapts it to the ZO protocol: one optimizer
step is one CMA generation, whose ``popsize`` candidates are evaluated in one oracle call, so under
``l2l.run`` they share one minibatch (as one ZO-SGD step's q+1 queries do).

Reproducibility: pycma draws every sample through its ``randn`` option (``randn(lam, N)``; default
``np.random.randn``, which its ``seed`` option seeds globally). Here ``randn`` is a private
``numpy.random.Generator`` seeded from the run's ``state.rng``, and the ``seed`` option is ``nan`` (pycma
then touches no global seed), so a run depends on its seed alone, also when runs interleave. Two
module-level things of pycma remain and neither changes a trajectory: constructing an ES sets pycma's
global warning verbosity (always to the same value here), and the TPA step-size rule (not the default
CSA, never used here) draws from ``np.random`` in a consistency assertion only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from l2l.optimizers.core.base import ZOOptimizer, ZOState
from l2l.optimizers.core.registry import register_optimizer
from l2l.oracle import Oracle


class _GeneratorRandn:
    """pycma's ``randn(lam, N)`` hook drawing from a private numpy Generator (deep-copyable, picklable)."""

    def __init__(self, seed: int):
        self.generator = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.generator.standard_normal(shape)


def default_popsize(dim: int) -> int:
    """pycma's default population size, 4 + floor(3 ln d) (the expression of its ``popsize`` option)."""
    return int(4 + 3 * math.log(dim))


@register_optimizer("cma_es")
@dataclass
class CMAES(ZOOptimizer):
    """CMA-ES through pycma: sample ``popsize`` candidates from N(m, sigma^2 C), rank them, adapt m, sigma, C.

    A step is one generation and costs exactly ``popsize`` queries; the mean m itself is never queried
    (``evaluates_iterate`` is False) and is the reported iterate ``state.x``. pycma's stopping criteria
    are not consulted: ``l2l.run`` decides when to stop. Sampling and the update run in float64; the
    candidates are rounded to the task's dtype (float32) to be evaluated, and pycma is told its own
    float64 samples with those losses (the rounding, ~1e-7 relative, is far below any useful sigma).

    Constraints: a candidate is projected with ``oracle.project`` before it is queried (so queries stay
    feasible, e.g. on attacks), and the mean is projected to give ``state.x``; pycma still ranks its raw
    samples by the loss of their projections (a repair without write-back, no penalty term). On the
    general black-box families (``binary_classification``, ``binary_real``, ``quadratic``) the
    projection is the identity, so neither step changes anything there. Only those families were
    measured; on constrained tasks the mean can drift outside the feasible set along flat directions.

    Args:
        sigma0: initial step size (std of each coordinate of the first generation's samples around x0),
            in the task's units; > 0. The default is the best of {0.01, 0.03, 0.1, 0.3, 1} on
            binary_classification val; binary_real and quadratic were indifferent to it (the scan is in
            docs/results/binary_classification.md).
        popsize: candidates per generation (lambda), >= 2; None for pycma's default 4 + floor(3 ln d)
            (17 at d = 100).
    """

    sigma0: float = 0.03
    popsize: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma0, int | float) and math.isfinite(self.sigma0) and self.sigma0 > 0):
            raise ValueError(f"sigma0={self.sigma0!r} must be a finite number > 0 (the initial step size)")
        if self.popsize is not None and (
            isinstance(self.popsize, bool) or not isinstance(self.popsize, int) or self.popsize < 2
        ):
            raise ValueError(
                f"popsize={self.popsize!r} must be an integer >= 2 (candidates per generation), "
                "or None for pycma's default 4 + floor(3 ln d)"
            )

    def queries_per_step(self, dim: int) -> int:
        return default_popsize(dim) if self.popsize is None else self.popsize

    def next_step_queries(self, state: ZOState, dim: int) -> int:
        return state.slots["es"].popsize

    def init_slots(self, state: ZOState) -> None:
        # imported here: pycma pulls in scipy.stats (1-4 s on this machine), paid only by runs using it
        import cma

        seed = int(torch.randint(0, 2**62, (1,), generator=state.rng, device=state.rng.device))
        options = {
            "popsize": self.queries_per_step(state.x.shape[0]),
            "randn": _GeneratorRandn(seed),
            "seed": np.nan,  # nan: pycma seeds no global RNG (randn above is the only source)
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "signals_filename": None,  # never read options from a file in the working directory
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = cma.CMAEvolutionStrategy(state.x.double().numpy(), float(self.sigma0), options)
        if es.popsize != options["popsize"]:
            raise RuntimeError(f"pycma set popsize {es.popsize}, not the {options['popsize']} requested")
        state.slots["es"] = es

    def step(self, state: ZOState, oracle: Oracle) -> ZOState:
        es = state.slots["es"]
        with warnings.catch_warnings():
            # pycma warns, e.g., on flat fitness (it then enlarges sigma itself); runs stay silent
            warnings.simplefilter("ignore")
            samples = es.ask()
            candidates = torch.as_tensor(np.stack(samples), dtype=state.x.dtype)
            losses = oracle(torch.stack([oracle.project(c) for c in candidates]))
            es.tell(samples, losses.double().tolist())
        state.x = oracle.project(torch.as_tensor(es.mean, dtype=state.x.dtype).clone())
        state.fx = None
        state.step += 1
        return state

    def config(self) -> dict:
        return asdict(self)
