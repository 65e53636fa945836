"""Process groups on torch.distributed (gloo on CPU) for any CLI: ``--workers N`` or ``torchrun``.

Two ways to run a command on N processes, both through torch's own machinery:

- ``--workers N``: :func:`launch` starts N - 1 processes with ``torch.multiprocessing.start_processes``
  (start method ``spawn``) and makes the calling process rank 0; the N ranks join one gloo process group
  through a ``FileStore`` in a fresh temporary folder (no port to pick, so no race for a free one).
- ``torchrun --standalone --nproc-per-node N -m <module> ...``: every rank finds ``RANK`` and
  ``WORLD_SIZE`` in its environment and :func:`launch` initialises the gloo group from it
  (``env://``); ``--workers`` must then be 1 (its default) or N.

Every rank runs the whole command (SPMD). Sharded evaluation (``eval.distributed``) calls
:func:`sharded_map` wherever the serial code would loop over a grid: rank r takes the items r, r + N,
r + 2N, ... in serial order (round-robin, :func:`shard`), and ``all_gather_object`` hands every rank all
results, put back in the serial order. Data-parallel meta-training (``l2l.learned.meta``) shards the
meta-batch the same way and sums gradients with :func:`all_reduce_sum`. Only rank 0 (:func:`is_main`)
writes files, logs, prints or shows a progress bar; :func:`launch` sends the other ranks' stdout to the
null device and silences their warnings; their stderr stays open, so a crash still shows.

A :func:`sharded_map` item that raises on some rank does not leave the others waiting: it is caught,
gathered with the results, and every rank raises the error of the earliest failing item in the serial
order.

Library code of the lowest layer (it imports only torch), so that ``eval`` and ``train`` share it.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing.util
import os
import pickle
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

T = TypeVar("T")
R = TypeVar("R")

#: how long a rank waits for the others at a collective: long, since ranks finish their shards at
#: different times and a big grid runs for hours; a rank that dies closes its connections, which ends
#: the wait at once
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=12)
#: the ``--workers`` default of every CLI that takes it: one process, no group
WORKERS_DEFAULT = 1
#: the torchrun variables that mark a process as one rank of a launched job
ENV_VARS = ("RANK", "WORLD_SIZE")


def rank() -> int:
    """This process's rank in the default process group (0 when none is initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The default process group's size (1 when none is initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes the outputs: rank 0, or the only process."""
    return rank() == 0


def check_workers(workers: int) -> None:
    """Refuse a worker count below 1.

    Args:
        workers: the ``--workers`` value.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be an integer >= 1 (1 runs serially in this process)")


def leave_after_clean_run() -> None:
    """End a torchrun rank of a multi-rank run now, skipping interpreter finalization (else no-op).

    :func:`run_cli` calls it once ``main`` has returned. Tearing gloo's C++ threads down with the
    interpreter occasionally aborts a finished rank (SIGABRT, "terminate called without an active
    exception"), and torchrun then reports the whole run as failed. The spawned ranks of ``--workers``
    leave the same way (see :func:`_spawned`). Output is flushed first; ``atexit`` hooks do not run,
    so a CLI finishes its files and wandb run inside ``main``, as every CLI here does.
    """
    world = torchrun_world()
    if world is None or world == 1:
        return
    _exit_now()


def torchrun_world() -> int | None:
    """torchrun's ``WORLD_SIZE`` when it started this process (``RANK``, ``WORLD_SIZE`` set), else None."""
    if not all(name in os.environ for name in ENV_VARS):
        return None
    return int(os.environ["WORLD_SIZE"])


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s items of ``items``: positions ``rank``, ``rank + world``, ... (round-robin).

    Args:
        items: the whole grid, in its serial order.
        rank: this rank, in ``[0, world)``.
        world: the number of ranks.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank={rank} must be in [0, world={world}) and world >= 1")
    return list(items[rank::world])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks in place (a no-op without a group) and return it.

    Args:
        tensor: this rank's part; every rank must call with the same shape and dtype.
    """
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(value: T) -> list[T]:
    """Every rank's ``value``, indexed by rank (``[value]`` without a group).

    Args:
        value: a picklable object; every rank must call.
    """
    if world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _picklable(err: BaseException) -> BaseException:
    """``err`` itself if it pickles (so other ranks re-raise the same type), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


def sharded_map(
    fn: Callable[[T], R], items: Sequence[T], on_done: Callable[[], None] | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, each rank computing its :func:`shard`; every rank gets all results.

    Serial (no process group, or one rank) it is exactly that loop. Every rank of the group must call it
    with the same ``items``.

    Args:
        fn: computes one item's result; called only on this rank's items, in their serial order.
        items: the grid, in its serial order.
        on_done: called after each of this rank's items (a progress bar's update).

    Raises:
        Exception: the error of the earliest item (in serial order) whose ``fn`` raised, on every rank.
    """
    world, me = world_size(), rank()
    positions = shard(range(len(items)), me, world)
    results: list[R] = []
    failure: tuple[int, BaseException] | None = None
    for pos in positions:
        try:
            results.append(fn(items[pos]))
        except Exception as err:
            if world == 1:
                raise
            failure = (pos, _picklable(err))  # every rank must still reach the gather below
            break
        if on_done is not None:
            on_done()
    if world == 1:
        return results
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (results, failure))
    failures = [f for _, f in gathered if f is not None]
    if failures:
        raise min(failures, key=lambda f: f[0])[1]
    merged: list[Any] = [None] * len(items)
    for r, (part, _) in enumerate(gathered):
        for pos, value in zip(shard(range(len(items)), r, world), part, strict=True):
            merged[pos] = value
    return merged


def _init_group(rank: int, world: int, store: Path | None) -> None:
    """Join the gloo group: through the FileStore at ``store``, or from torchrun's environment (None)."""
    if store is None:
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    else:
        init = store.resolve().as_uri()
        dist.init_process_group(
            "gloo", init_method=init, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT
        )


@contextlib.contextmanager
def _rank_scope(rank: int, world: int, store: Path | None) -> Iterator[None]:
    """Inside: a member of the gloo group; a rank other than 0 prints nothing and warns nothing."""
    _init_group(rank, world, store)
    try:
        if rank == 0:
            yield
        else:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        dist.barrier()  # no rank closes its connections while a peer may still be using them
    finally:
        dist.destroy_process_group()


def _spawned(index: int, fn: Callable[[Any], Any], arg: Any, world: int, store: str) -> None:
    """The body of a spawned worker: rank ``index + 1`` runs ``fn(arg)`` (rank 0 is the launcher).

    After a clean run the worker leaves by ``os._exit(0)``: its group is destroyed by then, and skipping
    interpreter finalization avoids an occasional SIGABRT ("terminate called without an active
    exception") from gloo's C++ threads being torn down with it, which the launcher would report as a
    failed rank. An error still propagates, so the launcher sees its traceback.
    """
    with _rank_scope(index + 1, world, Path(store)):
        fn(arg)
    _exit_now()


def _exit_now() -> None:
    """Leave the process with status 0, skipping interpreter finalization, with output flushed.

    os._exit skips multiprocessing's exit hooks too, so its finalizers run first: they unlink the
    semaphores this process created (tqdm's lock, made even by a disabled bar), which a resource
    tracker would otherwise report as leaked at shutdown.
    """
    multiprocessing.util._run_finalizers(0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(fn: Callable[[Any], R], arg: Any, workers: int = 1) -> R:
    """Run ``fn(arg)`` on every rank of a gloo group; returns rank 0's (this process's) result.

    Under torchrun (``RANK`` and ``WORLD_SIZE`` set) the group comes from the environment and this
    process is whichever rank torchrun made it. Otherwise, with ``workers`` > 1, this process is rank 0
    and ``workers - 1`` spawned processes (``torch.multiprocessing.start_processes``) the others, joined
    through a FileStore in a temporary folder. With one worker and no torchrun, it is just ``fn(arg)``.

    Args:
        fn: the per-rank body (a CLI's work after parsing); a module-level function, since the spawned
            processes receive it pickled, with ``arg``.
        arg: its argument (the parsed config).
        workers: the number of processes, this one included.

    Raises:
        ValueError: ``workers`` < 1, or ``workers`` > 1 and not torchrun's ``WORLD_SIZE``.
    """
    check_workers(workers)
    launched = torchrun_world()
    if launched is not None:
        if workers not in (1, launched):
            raise ValueError(
                f"workers={workers} but torchrun started WORLD_SIZE={launched} processes; under torchrun "
                "leave --workers out (or give the same number)"
            )
        if launched == 1:
            return fn(arg)
        with _rank_scope(int(os.environ["RANK"]), launched, None):
            return fn(arg)
    if workers == 1:
        return fn(arg)
    return _spawn_and_run(fn, arg, workers)


def _spawn_and_run(fn: Callable[[Any], R], arg: Any, workers: int) -> R:
    """:func:`launch`'s own processes: spawn ranks 1 .. workers - 1, run rank 0 here, then join them."""
    folder = Path(tempfile.mkdtemp(prefix="l2l_dist_"))
    store = folder / "store"
    context = mp.start_processes(
        _spawned,
        args=(fn, arg, workers, str(store)),
        nprocs=workers - 1,
        join=False,
        daemon=True,  # a crashed launcher must not leave its workers behind
        start_method="spawn",
    )
    try:
        with _rank_scope(0, workers, store):
            result = fn(arg)
        while not context.join():
            pass
        return result
    except RuntimeError:
        # a collective failed, most likely because a worker died: its own traceback (torch's
        # ProcessRaisedException, chained to this error) says why; any other error is this rank's own
        context.join(timeout=5)
        raise
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        shutil.rmtree(folder, ignore_errors=True)
