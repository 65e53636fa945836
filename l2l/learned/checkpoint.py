"""Save and load trained ZO-LSTM optimizers: one ``.pt`` file holds everything needed to run one.

The file is a plain dict (readable with ``torch.load(weights_only=True)``)::

    {"format": "l2l-zo-lstm", "format_version": 1, "version": <l2l version that wrote it>,
     "optimizer": {q, mu, query_prob, alpha, directions, ...},   # ZOLSTM options
     "update_rnn": state_dict, "query_rnn": state_dict,
     "train_config": {...}, "task": {...}, "val": {...}}         # provenance, not needed to run

``l2l.load_optimizer(path)`` returns the frozen optimizer (this module registers the ``.pt`` loader);
:func:`load_zo_lstm` also builds the ablations of papers/002 sec. 4.4 from the same file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import l2l
from l2l.common.io import save_torch_atomic
from l2l.common.paths import shipped_file
from l2l.learned.zo_lstm import ZOLSTM, make_variant
from l2l.loading import register_loader

FORMAT = "l2l-zo-lstm"
FORMAT_VERSION = 1
#: the marker of ``train.zo_lstm``'s resume files, which hold a training state rather than an optimizer
TRAINING_FORMAT = "l2l-zo-lstm-training"
REQUIRED_KEYS = ("optimizer", "update_rnn", "query_rnn")


def checkpoint_dict(
    optimizer: ZOLSTM,
    train_config: dict | None = None,
    task: dict | None = None,
    val: dict | None = None,
) -> dict:
    """The checkpoint of ``optimizer`` as a plain dict (tensors, numbers, strings, lists, dicts).

    Args:
        optimizer: the optimizer to store (its options and both networks' weights).
        train_config: the full meta-training config.
        task: what it was trained on (family name, split sizes, ...).
        val: its validation metrics.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": l2l.__version__,
        "optimizer": optimizer.config(),
        "update_rnn": {k: v.detach().clone() for k, v in optimizer.update_net.state_dict().items()},
        "query_rnn": {k: v.detach().clone() for k, v in optimizer.query_net.state_dict().items()},
        "train_config": dict(train_config or {}),
        "task": dict(task or {}),
        "val": dict(val or {}),
    }


def save_zo_lstm(path: str | os.PathLike, optimizer: ZOLSTM, **provenance: Any) -> Path:
    """Write ``optimizer`` atomically to ``path``; ``provenance`` goes to :func:`checkpoint_dict`."""
    return save_torch_atomic(path, checkpoint_dict(optimizer, **provenance))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checked checkpoint dict at ``path``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not readable by torch, or not a ZO-LSTM checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no ZO-LSTM checkpoint at {str(path)!r}; train one with `python -m train.zo_lstm`"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{str(path)!r} is not a readable torch checkpoint (corrupt, truncated, or not written by "
            f"torch.save): {type(err).__name__}: {str(err)[:200]}"
        ) from err
    _check_format(path, ckpt)
    return ckpt


def _check_format(path: Path, ckpt: Any) -> None:
    if not isinstance(ckpt, dict):
        raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a ZO-LSTM checkpoint dict")
    found = ckpt.get("format")
    if found == TRAINING_FORMAT:
        raise ValueError(
            f"{str(path)!r} is a meta-training state (for `python -m train.zo_lstm --resume`), not an "
            "optimizer; load the best.pt written beside it"
        )
    if found != FORMAT:
        hint = " (it looks like a target-model checkpoint)" if "heldout_accuracy" in ckpt else ""
        raise ValueError(
            f"{str(path)!r} is not a ZO-LSTM checkpoint{hint}: its format marker is {found!r}, not "
            f"{FORMAT!r}; its keys are {sorted(map(str, ckpt))[:10]}"
        )
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has ZO-LSTM checkpoint format version {ckpt.get('format_version')!r} (written "
            f"by l2l {ckpt.get('version')!r}); this l2l ({l2l.__version__}) reads version {FORMAT_VERSION}. "
            "Load it with the l2l version that wrote it, or retrain"
        )
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing:
        raise ValueError(f"{str(path)!r} is an incomplete ZO-LSTM checkpoint: it lacks {missing}")


def optimizer_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> ZOLSTM:
    """The ZOLSTM that a checked checkpoint dict describes, with its trained weights, ready to run."""
    try:
        optimizer = ZOLSTM(**ckpt["optimizer"])
        optimizer.update_net.load_state_dict(ckpt["update_rnn"])
        optimizer.query_net.load_state_dict(ckpt["query_rnn"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{source} does not describe a valid ZO-LSTM: {str(err)[:300]}") from err
    for net in (optimizer.update_net, optimizer.query_net):
        net.eval().requires_grad_(False)
    return optimizer


#: the shipped checkpoint of each task family (under ``checkpoints/``), trained by ``train.zo_lstm``
SHIPPED = {"mnist_attack": "zo_lstm_mnist.pt", "binary_classification": "zo_lstm_binary.pt"}


def shipped_checkpoint(task: str) -> Path:
    """The shipped ZO-LSTM checkpoint trained on ``task``."""
    return shipped_file("ZO-LSTM checkpoint", SHIPPED, task, "python -m train.zo_lstm")


def load_zo_lstm(
    path: str | os.PathLike, variant: str = "zo_lstm", task: str | None = None, **overrides: Any
) -> ZOLSTM:
    """The frozen optimizer saved at ``path``, or one of its ablations.

    Args:
        path: a file written by :func:`save_zo_lstm` (e.g. ``train.zo_lstm``'s best.pt).
        variant: ``zo_lstm`` (as saved), ``zo_lstm_no_query``, ``zo_lstm_no_update``,
            ``zo_lstm_guided_es`` or ``zo_lstm_untrained`` (see ``l2l.learned.zo_lstm.VARIANTS``).
        task: task family whose tuned ZO-SGD delta the ``zo_lstm_no_update`` variant uses.
        **overrides: options to change (e.g. ``q=50``, ``alpha=0.5``, ``query_prob=1.0``).
    """
    optimizer = optimizer_from_checkpoint(read_checkpoint(path), source=repr(str(path)))
    if variant == "zo_lstm" and not overrides:
        return optimizer
    return make_variant(optimizer, variant, task=task, **overrides)


@register_loader(".pt")
def _load_pt(path: Path) -> ZOLSTM:
    """The ``.pt`` loader behind ``l2l.load_optimizer``."""
    return load_zo_lstm(path)
