"""Pinned losses of the shipped ZO-LSTM checkpoints: refactors of l2l.learned must keep them.

The numbers were recorded from the code before the learned-optimizer protocol (issue 11) with one torch
thread; a change here means a result figure changed. They are bit for bit on the machine that recorded
them, but another CPU's float kernels round differently, and the ZO estimate divides that rounding by
mu, so it grows along a run. Measured on a second machine: up to 5e-6 relative over the first 5
steps, 2e-4 (binary) and 6e-3 (MNIST, mu 1e-4) at step 20. So the first steps are checked to 1e-4
relative and step 20 to 1e-2; a real change of the method moves the first steps far more.
"""

from __future__ import annotations

import pytest
import torch

import l2l
from l2l.learned import load_zo_lstm

#: relative tolerances of the pins across CPUs: the first steps, and step 20 (module docstring)
REL, REL_LAST = 1e-4, 1e-2

#: (family, checkpoint) -> losses after steps 1..5 and after step 20 of a 20-step run (test index 0, seed 0)
PINNED = {
    ("mnist_attack", "checkpoints/zo_lstm_mnist.pt"): (
        [11.0997314453125, 11.102195739746094, 11.046061515808105, 10.947734832763672, 10.860308647155762],
        9.237086296081543,
    ),
    ("binary_classification", "checkpoints/zo_lstm_binary_paper.pt"): (
        [0.2359236180782318, 0.22683340311050415, 0.22453945875167847, 0.22161975502967834,
         0.2196059376001358],
        0.15204490721225739,
    ),
    # the shipped binary checkpoint: the ZO-Adam-based form (update_base="adam"), recorded 2026-12-02
    ("binary_classification", "checkpoints/zo_lstm_binary.pt"): (
        [0.2414545714855194, 0.23301947116851807, 0.22688090801239014, 0.22241756319999695,
         0.21939170360565186],
        0.17428995668888092,
    ),
    # the ZO-Trend-based binary checkpoint (directions="trend", update_base="sgd"), recorded 2026-12-02
    ("binary_classification", "checkpoints/zo_lstm_binary_trend.pt"): (
        [0.22734081745147705, 0.23062148690223694, 0.22844412922859192, 0.22187353670597076,
         0.2203710824251175],
        0.15514753758907318,
    ),
}  # fmt: skip

#: ablations of the papers/002-form binary checkpoint: variant -> (losses after steps 1..3, after step 20)
PINNED_VARIANTS = {
    "zo_lstm_no_query": ([0.2359236180782318, 0.22683340311050415, 0.22453945875167847], 0.15201906859874725),
    "zo_lstm_untrained": ([0.2493259161710739, 0.24888941645622253, 0.2485935091972351], 0.24317625164985657),
    "zo_lstm_guided_es": ([0.2359236180782318, 0.21875546872615814, 0.21031810343265533], 0.1507200002670288),
    "zo_lstm_no_update": (
        [0.23265738785266876, 0.24617208540439606, 0.24680478870868683],
        0.14994071424007416,
    ),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Trajectories are bit-identical only for a fixed torch thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("family", "path"), list(PINNED))
def test_shipped_checkpoint_trajectory_is_pinned(family: str, path: str) -> None:
    first, last = PINNED[(family, path)]
    traj = l2l.run(l2l.load_optimizer(path), l2l.make_task(family, split="test", index=0), steps=20, seed=0)
    assert len(traj.losses) == 21
    assert traj.losses[1:6] == pytest.approx(first, rel=REL)
    assert traj.losses[-1] == pytest.approx(last, rel=REL_LAST)


@pytest.mark.parametrize("variant", list(PINNED_VARIANTS))
def test_shipped_checkpoint_variant_trajectory_is_pinned(variant: str) -> None:
    first, last = PINNED_VARIANTS[variant]
    family = "binary_classification"
    optimizer = load_zo_lstm("checkpoints/zo_lstm_binary_paper.pt", variant, task=family)
    traj = l2l.run(optimizer, l2l.make_task(family, split="test", index=0), steps=20, seed=0)
    assert traj.losses[1:4] == pytest.approx(first, rel=REL)
    assert traj.losses[-1] == pytest.approx(last, rel=REL_LAST)
