"""The default meta-training schedule of the ZO-LSTM (``python -m train.zo_lstm``'s defaults).

It lives in ``l2l`` so that ``eval.bench`` can estimate a default training's duration without
importing ``train`` (layers import only downward). ``train.zo_lstm.TrainConfig`` declares the same
defaults; ``tests/test_layers.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetaSchedule:
    """How long a two-stage meta-training runs and how often it validates.

    Args:
        update_iterations: stage-1 meta-iterations (UpdateRNN).
        query_iterations: stage-2 meta-iterations (QueryRNN, UpdateRNN frozen).
        val_every: meta-iterations between validations.
        val_instances: val instances scored at each validation.
        alpha_grid: the update scales tried on val after training (comma-separated).
    """

    update_iterations: int = 1000
    query_iterations: int = 500
    val_every: int = 100
    val_instances: int = 10
    alpha_grid: str = "0.5,1,1.5,2,4,8"


#: the schedule ``python -m train.zo_lstm`` runs without options
ZO_LSTM_SCHEDULE = MetaSchedule()
