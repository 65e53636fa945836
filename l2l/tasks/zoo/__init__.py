"""Target-model zoos: architectures, the registry of trained models split into surrogates and held-out
targets, and the guard that keeps meta-training and tuning away from held-out targets.

Meta-training and tuning entry points run inside :func:`surrogates_only`; test-time evaluation of
held-out targets inside :func:`heldout_targets_allowed` (loading one is refused everywhere else).
"""

from l2l.tasks.zoo.guard import HeldOutTargetError, heldout_targets_allowed, surrogates_only
from l2l.tasks.zoo.registry import ZOO, ZooModel, zoo_model, zoo_names

__all__ = [
    "ZOO",
    "HeldOutTargetError",
    "ZooModel",
    "heldout_targets_allowed",
    "surrogates_only",
    "zoo_model",
    "zoo_names",
]
