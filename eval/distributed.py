"""Sharded evaluation on torch.distributed (gloo on CPU): ``--workers N`` or ``torchrun``.

The launcher and the sharding live in :mod:`l2l.common.distributed` (meta-training uses them too); this
module re-exports them for the evaluation CLIs, with their ``--workers`` help
(:data:`l2l.common.options.WORKERS_HELP`).

Two ways to run an evaluation CLI on N processes, both through torch's own machinery:

- ``python -m eval.compare ... --workers N``: :func:`launch` starts N - 1 processes with
  ``torch.multiprocessing.start_processes`` (start method ``spawn``) and makes the calling process
  rank 0; the N ranks join one gloo process group through a ``FileStore`` in a fresh temporary folder
  (no port to pick, so no race for a free one). The processes start once per command, however many
  grids it runs (``eval.tune`` runs one per candidate).
- ``torchrun --standalone --nproc-per-node N -m eval.compare ...``: every rank finds ``RANK`` and
  ``WORLD_SIZE`` in its environment and :func:`launch` initialises the gloo group from it
  (``env://``); ``--workers`` must then be 1 (its default) or N.

Every rank runs the whole command (SPMD): it parses the same arguments, builds the same tasks and
optimizers, and calls :func:`sharded_map` wherever the serial code would loop over the grid.
``sharded_map`` gives rank r the items r, r + N, r + 2N, ... of the grid in its serial order
(round-robin: the grid is optimizer-major, so every rank gets an equal share, within one, of every
optimizer's runs, and contiguous blocks would give one rank all of the slowest method), then
``all_gather_object`` hands every rank all results, put back in the serial order. Every rank therefore
holds the same results (``eval.tune``'s search, whose next candidates depend on the scores so far,
stays in step on all ranks); only rank 0 (:func:`is_main`) writes files, logs to wandb, prints or
shows a progress bar, which counts rank 0's own runs. :func:`launch` sends the other ranks' stdout to
the null device and silences their warnings; their stderr stays open, so a crash still shows.

Because every run has its own seed and each rank pins the command's ``--threads``, the gathered
results are bit-for-bit those of a serial run; only the measured wall-clock times (``wall_s``) differ.

A run that raises on some rank does not leave the others waiting: :func:`sharded_map` catches it,
gathers it with the results, and every rank raises the error of the earliest failing item in the serial
order, so ``eval.tune``'s handling of a NaN run (score inf) is the same as in a serial run.
"""

from __future__ import annotations

from l2l.common.distributed import (
    COLLECTIVE_TIMEOUT,
    ENV_VARS,
    WORKERS_DEFAULT,
    check_workers,
    is_main,
    launch,
    rank,
    shard,
    sharded_map,
    torchrun_world,
    world_size,
)
from l2l.common.options import WORKERS_HELP

__all__ = [
    "COLLECTIVE_TIMEOUT", "ENV_VARS", "WORKERS_DEFAULT", "WORKERS_HELP", "check_workers", "is_main", "launch",
    "rank", "shard", "sharded_map", "torchrun_world", "world_size",
]  # fmt: skip
