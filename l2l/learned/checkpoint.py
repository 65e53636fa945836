"""Save and load trained learned optimizers: one file holds everything needed to run one.

The file is a plain dict (readable with ``torch.load(weights_only=True)``), for every registered learned
optimizer NAME (see :mod:`l2l.learned.protocol`)::

    {"format": "l2l.learned/NAME", "format_version": <the optimizer's layout version>,
     "version": <l2l version that wrote it>,
     "config": {...},                                   # the optimizer's options
     "modules": {module name: state_dict, ...},         # its meta-parameters
     "train_config": {...}, "task": {...}, "val": {...}}  # provenance, not needed to run

The shipped ZO-LSTM files predate this layout: their marker is ``l2l-zo-lstm`` (format version 1, the
options under ``optimizer`` and the weights under ``update_rnn`` / ``query_rnn``); they are read as
``l2l.learned/zo_lstm`` files, unchanged on disk. Versions 1 and 2 name the ZO-LSTM's update options as
they were before ``update`` became one field (``update_base``, ``sgd_delta``); ``ZOLSTM.from_config``
renames them (:func:`l2l.learned.zo_lstm.upgrade_options`), and a class lists such older versions in
``upgradable_versions``. ``l2l.load_optimizer(path)`` dispatches on the marker
(this module registers both); :func:`load_learned` also builds an optimizer's variants from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from l2l.common.io import save_torch_atomic
from l2l.learned.protocol import FORMAT_PREFIX, LearnedOptimizer, learned_class
from l2l.learned.zo_lstm import ZOLSTM, make_variant
from l2l.loading import register_format
from l2l.version import __version__

#: the marker and layout of the ZO-LSTM files written before the protocol (the shipped checkpoints)
LEGACY_ZO_LSTM = "l2l-zo-lstm"
#: the current ZO-LSTM layout version (version 1 is the legacy layout)
FORMAT_VERSION = ZOLSTM.format_version
#: the marker of ``train.zo_lstm``'s resume files, which hold a training state rather than an optimizer
TRAINING_FORMAT = "l2l-zo-lstm-training"
#: the marker prefix of ``train.learned``'s resume files (``l2l.learned.training/NAME``)
TRAINING_PREFIX = "l2l.learned.training/"
REQUIRED_KEYS = ("config", "modules")


def format_marker(name: str) -> str:
    """The checkpoint format marker of the learned optimizer ``name``."""
    return FORMAT_PREFIX + name


def checkpoint_dict(
    optimizer: LearnedOptimizer,
    train_config: dict | None = None,
    task: dict | None = None,
    val: dict | None = None,
) -> dict:
    """The checkpoint of ``optimizer`` as a plain dict (tensors, numbers, strings, lists, dicts).

    Args:
        optimizer: the optimizer to store (its options and every module's weights).
        train_config: the full meta-training config.
        task: what it was trained on (family name, split sizes, ...).
        val: its validation metrics.
    """
    return {
        "format": format_marker(optimizer.learned_name),
        "format_version": optimizer.format_version,
        "version": __version__,
        "config": optimizer.config(),
        "modules": optimizer.module_states(),
        "train_config": dict(train_config or {}),
        "task": dict(task or {}),
        "val": dict(val or {}),
    }


def save_learned(path: str | os.PathLike, optimizer: LearnedOptimizer, **provenance: Any) -> Path:
    """Write ``optimizer`` atomically to ``path``; ``provenance`` goes to :func:`checkpoint_dict`."""
    return save_torch_atomic(path, checkpoint_dict(optimizer, **provenance))


#: the ZO-LSTM's name for :func:`save_learned` (``train.zo_lstm`` and older code call it so)
save_zo_lstm = save_learned


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checked checkpoint dict at ``path``, in the current layout (legacy files converted).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not readable by torch, or not a learned-optimizer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no learned-optimizer checkpoint at {str(path)!r}; train one with `python -m train.learned` "
            "(or `python -m train.zo_lstm`)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{str(path)!r} is not a readable torch checkpoint (corrupt, truncated, or not written by "
            f"torch.save): {type(err).__name__}: {str(err)[:200]}"
        ) from err
    return checked_checkpoint(ckpt, path)


def checked_checkpoint(ckpt: Any, path: Path) -> dict:
    """``ckpt`` (read from ``path``) checked and in the current layout; raises a clear ValueError."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a learned-optimizer checkpoint")
    found = ckpt.get("format")
    if found == TRAINING_FORMAT or (isinstance(found, str) and found.startswith(TRAINING_PREFIX)):
        raise ValueError(
            f"{str(path)!r} is a meta-training state (for --resume), not an optimizer; load the best.pt "
            "written beside it"
        )
    if found == LEGACY_ZO_LSTM:
        ckpt = _upgrade_legacy_zo_lstm(ckpt, path)
    elif not isinstance(found, str) or not found.startswith(FORMAT_PREFIX):
        hint = " (it looks like a target-model checkpoint)" if "heldout_accuracy" in ckpt else ""
        raise ValueError(
            f"{str(path)!r} is not a learned-optimizer checkpoint{hint}: its format marker is {found!r}, "
            f"not {FORMAT_PREFIX}<name>; its keys are {sorted(map(str, ckpt))[:10]}"
        )
    cls = _checkpoint_class(ckpt, path)
    if ckpt.get("format_version") not in (cls.format_version, *cls.upgradable_versions):
        raise ValueError(
            f"{str(path)!r} has {cls.learned_name} checkpoint format version {ckpt.get('format_version')!r} "
            f"(written by l2l {ckpt.get('version')!r}); this l2l ({__version__}) reads version "
            f"{cls.format_version}. Load it with the l2l version that wrote it, or retrain"
        )
    missing = [key for key in REQUIRED_KEYS if not isinstance(ckpt.get(key), dict)]
    if missing:
        raise ValueError(f"{str(path)!r} is an incomplete {cls.learned_name} checkpoint: it lacks {missing}")
    return ckpt


def _checkpoint_class(ckpt: dict, path: Path) -> type[LearnedOptimizer]:
    name = ckpt["format"].removeprefix(FORMAT_PREFIX)
    try:
        return learned_class(name)
    except KeyError as err:
        raise ValueError(
            f"{str(path)!r} holds a learned optimizer this l2l does not know: {err.args[0]}"
        ) from err


def _upgrade_legacy_zo_lstm(ckpt: dict, path: Path) -> dict:
    """A version-1 ``l2l-zo-lstm`` file (the shipped checkpoints) in the current layout."""
    if ckpt.get("format_version") != 1:
        raise ValueError(
            f"{str(path)!r} has ZO-LSTM checkpoint format version {ckpt.get('format_version')!r} under the "
            f"legacy marker {LEGACY_ZO_LSTM!r}, which only had version 1"
        )
    missing = [key for key in ("optimizer", "update_rnn", "query_rnn") if key not in ckpt]
    if missing:
        raise ValueError(f"{str(path)!r} is an incomplete ZO-LSTM checkpoint: it lacks {missing}")
    rest = {k: v for k, v in ckpt.items() if k not in ("optimizer", "update_rnn", "query_rnn")}
    modules = {"update_rnn": ckpt["update_rnn"], "query_rnn": ckpt["query_rnn"]}
    # version 2: the protocol's layout, the options named as in version 1 (ZOLSTM.from_config reads them)
    return {**rest, "format": format_marker("zo_lstm"), "format_version": 2,
            "config": ckpt["optimizer"], "modules": modules}  # fmt: skip


def optimizer_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> LearnedOptimizer:
    """The optimizer that a checked checkpoint dict describes, with its trained weights, ready to run."""
    cls = learned_class(ckpt["format"].removeprefix(FORMAT_PREFIX))
    try:
        optimizer = cls.from_config(ckpt["config"])
        optimizer.load_modules(ckpt["modules"])
    except (TypeError, ValueError, RuntimeError, AttributeError) as err:
        title = getattr(cls, "title", cls.learned_name)
        raise ValueError(f"{source} does not describe a valid {title}: {str(err)[:300]}") from err
    for module in optimizer.modules().values():
        module.eval().requires_grad_(False)
    return optimizer


def load_learned(
    path: str | os.PathLike, variant: str = "", task: str | None = None, **overrides: Any
) -> LearnedOptimizer:
    """The frozen learned optimizer saved at ``path``, or one of its variants.

    Args:
        path: a file written by :func:`save_learned` (e.g. ``train.learned``'s best.pt).
        variant: ``""`` (as saved), ``untrained`` (its control), or one of its ``variants``.
        task: task family whose tuned values a variant may use.
        **overrides: options to change (e.g. ``q=50``).
    """
    optimizer = optimizer_from_checkpoint(read_checkpoint(path), source=repr(str(path)))
    if not variant and not overrides:
        return optimizer
    return optimizer.make_variant(variant, task=task, **overrides)


#: the shipped checkpoint of each task family (under ``checkpoints/``), trained by ``train.zo_lstm``
SHIPPED = ZOLSTM.shipped_files


def shipped_checkpoint(task: str) -> Path:
    """The shipped ZO-LSTM checkpoint trained on ``task``."""
    return ZOLSTM.shipped_checkpoint(task)


def checkpoint_name(path: str | os.PathLike) -> str | None:
    """The learned optimizer that the file at ``path`` holds (its registry name, read from the marker).

    Returns ``""`` for a torch file of another kind and None for a file that torch cannot read (a
    policy zip, say) or that does not exist.
    """
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        return None
    marker = ckpt.get("format") if isinstance(ckpt, dict) else None
    if marker == LEGACY_ZO_LSTM:
        return ZOLSTM.learned_name
    if isinstance(marker, str) and marker.startswith(FORMAT_PREFIX):
        return marker.removeprefix(FORMAT_PREFIX)
    return ""


def load_zo_lstm(
    path: str | os.PathLike, variant: str = "zo_lstm", task: str | None = None, **overrides: Any
) -> ZOLSTM:
    """The frozen ZO-LSTM saved at ``path``, or one of its ablations.

    Args:
        path: a ZO-LSTM checkpoint (e.g. ``train.zo_lstm``'s best.pt, or a shipped legacy file).
        variant: ``zo_lstm`` (as saved), ``zo_lstm_no_query``, ``zo_lstm_no_update``,
            ``zo_lstm_guided_es`` or ``zo_lstm_untrained`` (see ``l2l.learned.zo_lstm.VARIANTS``).
        task: task family whose tuned ZO-SGD delta the ``zo_lstm_no_update`` variant uses.
        **overrides: options to change (e.g. ``q=50``, ``alpha=0.5``, ``query_prob=1.0``).
    """
    optimizer = optimizer_from_checkpoint(read_checkpoint(path), source=repr(str(path)))
    if not isinstance(optimizer, ZOLSTM):
        raise ValueError(f"{str(path)!r} holds a {optimizer.learned_name} optimizer, not a ZO-LSTM")
    if variant == "zo_lstm" and not overrides:
        return optimizer
    return make_variant(optimizer, variant, task=task, **overrides)


@register_format(FORMAT_PREFIX)
@register_format(LEGACY_ZO_LSTM)
def _load_learned_checkpoint(ckpt: dict, path: Path) -> LearnedOptimizer:
    """The handler behind ``l2l.load_optimizer`` for every learned optimizer's checkpoint."""
    return optimizer_from_checkpoint(checked_checkpoint(ckpt, path), source=repr(str(path)))


@register_format(TRAINING_FORMAT)
@register_format(TRAINING_PREFIX)
def _refuse_training_state(ckpt: dict, path: Path) -> LearnedOptimizer:
    """A meta-training resume file is not an optimizer: say which file to load instead."""
    return optimizer_from_checkpoint(checked_checkpoint(ckpt, path))  # raises the training-state error
