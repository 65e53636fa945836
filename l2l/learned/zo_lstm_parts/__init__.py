"""The ZO-LSTM's parts: small strategy objects that the config's options pick and compose.

- a direction sampler (:mod:`.directions`, option ``directions``): Gaussian, QueryRNN, Guided-ES or
  trend directions, and the estimate along them;
- an update rule (:mod:`.updates`, option ``update``): the paper's UpdateRNN step, a base step alone
  (:mod:`.bases`: ZO-SGD or ZO-Adam), or a learned correction on a base step;
- an input transform (:mod:`.inputs`, option ``input_norm``): what the UpdateRNN reads.

Each registry maps an option's value to its part; :func:`~.building.build_part` builds a part from the
options it declares as fields, and the part's ``__post_init__`` checks them (the only place they are
checked). :class:`~l2l.learned.zo_lstm.ZOLSTM` holds the networks and composes the parts.
"""

from l2l.learned.zo_lstm_parts.bases import BASE_STEPS, AdamBase, BaseStep, SGDBase
from l2l.learned.zo_lstm_parts.building import build_part, choose
from l2l.learned.zo_lstm_parts.directions import (
    DIRECTIONS,
    DirectionSampler,
    GaussianDirections,
    GuidedESDirections,
    QueryRNNDirections,
    TrendDirections,
)
from l2l.learned.zo_lstm_parts.inputs import INPUT_TRANSFORMS, AdamInput, InputTransform, PlainInput, RMSInput
from l2l.learned.zo_lstm_parts.updates import (
    CORRECTED,
    UPDATE_RULES,
    CorrectedBaseStep,
    PlainBaseStep,
    UpdateRNNStep,
    UpdateRule,
    base_name,
    build_update_rule,
    learns,
)

__all__ = [
    "BASE_STEPS",
    "CORRECTED",
    "DIRECTIONS",
    "INPUT_TRANSFORMS",
    "UPDATE_RULES",
    "AdamBase",
    "AdamInput",
    "BaseStep",
    "CorrectedBaseStep",
    "DirectionSampler",
    "GaussianDirections",
    "GuidedESDirections",
    "InputTransform",
    "PlainBaseStep",
    "PlainInput",
    "QueryRNNDirections",
    "RMSInput",
    "SGDBase",
    "TrendDirections",
    "UpdateRNNStep",
    "UpdateRule",
    "base_name",
    "build_part",
    "build_update_rule",
    "choose",
    "learns",
]
