"""Learned zeroth-order optimizers: the ZO-LSTM of papers/002 (UpdateRNN + QueryRNN) and its checkpoints.

Importing this package registers ``zo_lstm_untrained`` with ``l2l.make_optimizer`` and the ``.pt``
loader behind ``l2l.load_optimizer``.
"""

from l2l.learned.checkpoint import load_zo_lstm, read_checkpoint, save_zo_lstm
from l2l.learned.meta import MetaConfig, MetaTrainer, Validation, validate
from l2l.learned.networks import QueryRNN, UpdateRNN
from l2l.learned.zo_lstm import VARIANTS, ZOLSTM, UntrainedZOLSTM, make_variant

__all__ = [
    "VARIANTS",
    "ZOLSTM",
    "MetaConfig",
    "MetaTrainer",
    "QueryRNN",
    "UntrainedZOLSTM",
    "UpdateRNN",
    "Validation",
    "load_zo_lstm",
    "make_variant",
    "read_checkpoint",
    "save_zo_lstm",
    "validate",
]
