"""Hand-designed zeroth-order optimizers, one small module each, registered by name."""

from l2l.optimizers import (  # noqa: F401  (registration)
    bandits_td,
    beta_attack,
    cma_es,
    fo_ead,
    fo_ngd,
    fo_pgd,
    guided_es,
    nes,
    parsimonious,
    pso,
    rand_search,
    signhunter,
    simba,
    spsa,
    square,
    zo_adam,
    zo_ead,
    zo_ngd,
    zo_sgd,
    zo_signsgd,
    zo_szvrg,
    zo_trend,
    zoo_adam,
    zoo_newton,
)
from l2l.optimizers.base import GradientEstimateOptimizer, ZOOptimizer, ZOState
from l2l.optimizers.registry import make_optimizer, optimizer_names, register_optimizer, tuned_params

__all__ = [
    "GradientEstimateOptimizer",
    "ZOOptimizer",
    "ZOState",
    "make_optimizer",
    "optimizer_names",
    "register_optimizer",
    "tuned_params",
]
