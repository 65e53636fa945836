"""Learned zeroth-order optimizers behind one protocol (:mod:`l2l.learned.protocol`), and their checkpoints.

Registered learned optimizers: the ZO-LSTM of papers/002 (UpdateRNN + QueryRNN, ``zo_lstm``), a
learned per-coordinate momentum over the ZO estimate (``zo_lmom``), and SignHunter from a learned
class-conditional start (``signhunter_prior``). Importing this package registers
them, ``zo_lstm_untrained`` with ``l2l.make_optimizer``, and their checkpoint formats behind
``l2l.load_optimizer``.
"""

from l2l.learned.checkpoint import load_learned, load_zo_lstm, read_checkpoint, save_learned, save_zo_lstm
from l2l.learned.guided_sampler import GuidedSampler, GuidedSamplerConfig
from l2l.learned.meta import MetaTrainer, Validation, validate
from l2l.learned.networks import QueryRNN, UpdateRNN
from l2l.learned.protocol import (
    LearnedConfig,
    LearnedOptimizer,
    Stage,
    TrainStep,
    learned_class,
    learned_names,
    register_learned,
)
from l2l.learned.signhunter_prior import SignHunterPrior, SignHunterPriorConfig
from l2l.learned.zo_lmom import ZOLMom, ZOLMomConfig
from l2l.learned.zo_lstm import VARIANTS, ZOLSTM, MetaConfig, UntrainedZOLSTM, ZOLSTMConfig, make_variant

__all__ = [
    "VARIANTS",
    "ZOLSTM",
    "GuidedSampler",
    "GuidedSamplerConfig",
    "LearnedConfig",
    "LearnedOptimizer",
    "MetaConfig",
    "MetaTrainer",
    "QueryRNN",
    "SignHunterPrior",
    "SignHunterPriorConfig",
    "Stage",
    "TrainStep",
    "UntrainedZOLSTM",
    "UpdateRNN",
    "Validation",
    "ZOLMom",
    "ZOLMomConfig",
    "ZOLSTMConfig",
    "learned_class",
    "learned_names",
    "load_learned",
    "load_zo_lstm",
    "make_variant",
    "read_checkpoint",
    "register_learned",
    "save_learned",
    "save_zo_lstm",
    "validate",
]
