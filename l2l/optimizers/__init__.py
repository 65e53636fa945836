"""Hand-designed zeroth-order optimizers, one small module each, registered by name."""

from l2l.optimizers import zo_adam, zo_sgd, zo_signsgd  # noqa: F401  (registration)
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
