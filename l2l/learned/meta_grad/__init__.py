"""Meta-gradient estimators (truncated BPTT, antithetic ES, PES) and oracle-only meta-objectives.

Importing the package registers ``tbptt`` (:mod:`.tbptt`), ``es`` (:mod:`.es`) and ``pes``
(:mod:`.pes`), and the meta-objectives of :mod:`.objectives`.
"""

from l2l.learned.meta_grad import es, pes, tbptt  # noqa: F401 - registers the estimators
from l2l.learned.meta_grad.base import (
    DEFAULT_ESTIMATOR,
    DEFAULT_OBJECTIVE,
    MetaGradConfig,
    MetaGradient,
    derived_seed,
    estimator_class,
    estimator_names,
    register_estimator,
)
from l2l.learned.meta_grad.objectives import (
    FAILURE_FACTOR,
    Horizon,
    MetaObjective,
    objective_class,
    objective_names,
)
from l2l.learned.meta_grad.tbptt import Unroll

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_OBJECTIVE",
    "FAILURE_FACTOR",
    "Horizon",
    "MetaGradConfig",
    "MetaGradient",
    "MetaObjective",
    "Unroll",
    "derived_seed",
    "estimator_class",
    "estimator_names",
    "objective_class",
    "objective_names",
    "register_estimator",
]
