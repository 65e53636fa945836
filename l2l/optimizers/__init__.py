"""Hand-designed zeroth-order optimizers, one small module each, registered by name.

The registered black-box methods are the modules of this package; the white-box references, which read
true gradients, are in :mod:`l2l.optimizers.white_box`; what the methods are built on (base classes,
registry, search spaces, tuned values) is in :mod:`l2l.optimizers.core`. Import the public names from
here: ``from l2l.optimizers import ZOOptimizer, make_optimizer, tuned_params``.
"""

from l2l.optimizers import (  # noqa: F401  (registration)
    bandits_td,
    beta_attack,
    cma_es,
    guided_es,
    nes,
    parsimonious,
    prgf,
    pso,
    rand_search,
    signhunter,
    simba,
    spsa,
    square,
    transfer,
    white_box,
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
from l2l.optimizers.core.base import GradientEstimateOptimizer, ZOOptimizer, ZOState
from l2l.optimizers.core.factory import make_optimizer
from l2l.optimizers.core.registry import (
    accepted_params,
    optimizer_class,
    optimizer_names,
    parameter_names,
    register_optimizer,
)
from l2l.optimizers.core.tuned import StaleTuningWarning, is_tuned, load_tuned, tuned_params

__all__ = [
    "GradientEstimateOptimizer",
    "StaleTuningWarning",
    "ZOOptimizer",
    "ZOState",
    "accepted_params",
    "is_tuned",
    "load_tuned",
    "make_optimizer",
    "optimizer_class",
    "optimizer_names",
    "parameter_names",
    "register_optimizer",
    "tuned_params",
]
