"""Turn an optimizer list such as ``zo_sgd,zo_adam,mine=checkpoints/x.pt`` into labeled factories.

The items are parsed by :func:`l2l.loading.parse_references` (the one parser of the grammar); this
module resolves them. Each item is either

- a registered name (``zo_adam``): built by ``l2l.make_optimizer(name, task=<family>, q=q[, mu=mu])``
  (q and mu only for methods that have them),
  so the values tuned for that task family apply and the caller's ``q`` (and ``mu``, when given) win;
  the label is the name;
- ``label=path``: a saved optimizer loaded by ``l2l.load_optimizer(path)`` exactly as it was saved
  (a learned optimizer keeps its own q and mu; the overrides do not apply to it);
- ``label=path#variant``: a variant of a learned optimizer's checkpoint, as its class declares them
  (ZO-LSTM: ``no_query``, ``no_update``, ``guided_es``; every learned optimizer: ``untrained``);
- ``zo_lstm``, ``zo_lstm_no_query``, ``zo_lstm_no_update``, ``zo_lstm_guided_es``: the task's shipped
  ZO-LSTM checkpoint, or that ablation of it;
- ``label=policy.zip``: a ZO-RL sampling policy as the ``zo_rl`` optimizer (papers/003);
  ``label=policy.zip#untrained`` its untrained control, ``label=policy.zip#lstm`` the task's shipped
  ZO-LSTM sampling with it (ZO-RL-LSTM), ``label=policy.zip#lstm=zo_lstm.pt`` that ZO-LSTM instead,
  and ``#lstm_untrained[=zo_lstm.pt]`` the same ZO-LSTM sampling with an untrained policy;
- ``zo_rl``, ``zo_rl_lstm``: the task's shipped policy, alone or with the shipped ZO-LSTM.

Every trained learned optimizer and ZO-RL policy brings its untrained control (``<label>_untrained``)
into the comparison; for ZO-RL-LSTM that is the trained ZO-LSTM with an untrained policy (what the
policy adds).

The variants are declared by each optimizer, not here: a learned optimizer's by its class
(``LearnedOptimizer.variants``, ``untrained`` its control; the file's format marker says which
optimizer it holds), a policy's by the grammar its loader plugin registers with l2l.loading
(:class:`agents.zo_rl.PolicyVariants`; stable-baselines3 is imported only when a policy or an unknown
name is listed). This module only dispatches. A file that does not exist yet (it is
loaded lazily) is taken by its name: ``.zip`` a policy, anything else a ZO-LSTM checkpoint, the only
learned optimizer whose files predate the marker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import l2l
from l2l.learned.checkpoint import checkpoint_name, load_learned
from l2l.learned.protocol import UNTRAINED, LearnedOptimizer, learned_class, learned_names
from l2l.loading import Reference, Variants, claiming_variants, parse_references, shipped_variants
from l2l.optimizers import accepted_params, optimizer_class, optimizer_names
from l2l.optimizers.core.base import ZOOptimizer

#: what a path whose file does not exist yet is taken for (see the module docstring)
_DEFAULT_LEARNED = "zo_lstm"


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of a comparison.

    Attributes:
        label: the name it carries in tables, plots and JSON keys (unique within a comparison).
        source: the registered name or the checkpoint path it comes from.
        factory: builds the optimizer; called once per comparison, before any run starts.
        control: its untrained control (labeled ``<label>_untrained``), or None when it has none.
    """

    label: str
    source: str
    factory: Callable[[], ZOOptimizer]
    control: OptimizerSpec | None = None


def parse_optimizers(
    text: str, task: str | None, q: int | None, mu: float | None = None, tuned_key: str | None = None
) -> list[OptimizerSpec]:
    """Parse a comma-separated optimizer list into specs, checking it before anything runs.

    Args:
        text: e.g. ``"zo_sgd,zo_adam,mine=checkpoints/x.pt"``; whitespace around items is ignored.
        task: the task family whose shipped checkpoints the bare learned names load, and whose tuned
            hyperparameters the registered optimizers use unless ``tuned_key`` is given (None: class
            defaults).
        q: query directions per step for the registered optimizers; None keeps the tuned (or default) q.
        mu: smoothing radius for the registered optimizers; None keeps the tuned (or default) value.
        tuned_key: the ``tuned.json`` key to read instead of ``task`` (the registered optimizers and the
            ``no_update`` ablation's ZO-SGD delta), e.g. ``l2l.tasks.registry.tuning_key(task, eps=0.3)``.

    Raises:
        ValueError: an empty item, an empty label or path, a duplicate label, or a bare path.
        KeyError: an unknown optimizer name (the message lists the registered ones).
    """
    tuned = task if tuned_key is None else tuned_key
    refs = parse_references(text)
    specs = with_untrained_controls([_reference_spec(ref, task, q, mu, tuned) for ref in refs], task)
    labels = [spec.label for spec in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(
            f"optimizer list {text!r} repeats the label(s) {duplicates}; give each entry its own label "
            "(e.g. a=ckpt1.pt,b=ckpt2.pt)"
        )
    return specs


def _reference_spec(
    ref: Reference, task: str | None, q: int | None, mu: float | None, tuned: str | None
) -> OptimizerSpec:
    """The spec of one parsed item (:func:`l2l.loading.parse_reference`); ``tuned``: the tuned key."""
    if ref.path is not None:
        return _path_spec(ref, task, tuned)
    item = str(ref.name)
    shipped = _shipped_learned(item)
    if shipped is not None:
        if task is None:
            raise ValueError(f"{item!r} needs a task to find its shipped checkpoint")
        return _learned_spec(item, str(shipped.shipped_checkpoint(task)), shipped, item, tuned)
    if item not in optimizer_names():
        plugin = shipped_variants(item)  # imports the loader plugins (stable-baselines3)
        if plugin is not None:
            if task is None:
                raise ValueError(f"{item!r} needs a task to find its shipped file")
            shipped_ref = Reference(item, path=plugin.shipped_path(task), variant=plugin.shipped[item])
            return _plugin_spec(shipped_ref, plugin, task)
    optimizer_class(item)  # raises the registry's KeyError, which lists the known names
    shared = {k: v for k, v in {"q": q, "mu": mu}.items() if v is not None}
    overrides = accepted_params(item, shared)
    return OptimizerSpec(item, item, functools.partial(l2l.make_optimizer, item, task=tuned, **overrides))


def _shipped_learned(item: str) -> type[LearnedOptimizer] | None:
    """The learned optimizer that ships checkpoints named ``item`` (``NAME``, ``NAME_<variant>``)."""
    for name in learned_names():
        cls = learned_class(name)
        variants = [f"{name}_{v}" for v in cls.variant_names() if v != UNTRAINED]
        if cls.shipped_files and item in (name, *variants):
            return cls
    return None


def _path_spec(ref: Reference, task: str | None, tuned: str | None) -> OptimizerSpec:
    """``label=path[#variant]``: dispatched on what the file holds (its format marker).

    ``task`` finds shipped companions; ``tuned`` is the tuned-values key that learned variants read.
    """
    label, path, variant = ref.label, str(ref.path), ref.variant
    name = checkpoint_name(path) if Path(path).is_file() else None
    if name is None:
        plugin = claiming_variants(path)  # not a torch file (or not there yet): a plugin's format?
        if plugin is not None:
            return _plugin_spec(ref, plugin, task)
    if (name == "" or (name is None and Path(path).is_file())) and not variant:
        # a torch file of another kind, or a file nobody reads: load_optimizer names the problem
        return OptimizerSpec(label, path, functools.partial(l2l.load_optimizer, path))
    cls = learned_class(name or _DEFAULT_LEARNED)
    return _learned_spec(label, path, cls, cls.learned_name + "_" + variant if variant else "", tuned)


def _learned_spec(
    label: str, path: str, cls: type[LearnedOptimizer], variant: str, task: str | None
) -> OptimizerSpec:
    """A learned optimizer's checkpoint as saved (``variant`` ``""`` or ``NAME``) or one of its variants.

    ``variant`` is ``NAME_<variant>``, ``NAME`` or ``""``; the source reads ``path[#variant]``. An
    optimizer as saved comes with its untrained control. ``task`` is the tuned-values key that variants
    read (e.g. the ``no_update`` ablation's ZO-SGD delta).
    """
    name = cls.learned_name
    short = "" if variant in ("", name) else variant.removeprefix(name + "_")
    if short and short not in cls.variant_names():
        known = ", ".join(cls.variant_names())
        title = cls.title or name
        raise ValueError(f"unknown {title} variant in {label}={path}#...: {short!r}; choose one of {known}")
    source = f"{path}#{variant}" if variant else path
    spec = OptimizerSpec(label, source, functools.partial(load_learned, path, short, task))
    if short:
        return spec
    untrained = _learned_spec(f"{label}_untrained", path, cls, f"{name}_{UNTRAINED}", task)
    return OptimizerSpec(label, source, spec.factory, untrained)


def _plugin_spec(ref: Reference, plugin: Variants, task: str | None) -> OptimizerSpec:
    """A loader plugin's file (e.g. a policy zip) in the plugin's own variant grammar, with its control."""
    factory = plugin.resolve(ref, task)
    other = plugin.control(ref.variant)
    control = None
    if other is not None:
        untrained = Reference(f"{ref.label}_untrained", path=ref.path, variant=other)
        control = _plugin_spec(untrained, plugin, task)
    return OptimizerSpec(ref.label, ref.source, factory, control)


def with_untrained_controls(specs: list[OptimizerSpec], task: str | None = None) -> list[OptimizerSpec]:
    """``specs`` plus, after each trained learned optimizer or ZO-RL policy, its ``<label>_untrained``.

    The control has the same architecture and options with random initial weights; only the gap to it
    shows what meta-training bought (an untrained ZO-LSTM on a ZO-Adam base is tuned ZO-Adam:
    docs/results/binary_classification.md). A control whose label the list already uses is left out.
    ``task`` is unused (the controls are built with their specs).
    """
    out, labels = [], {spec.label for spec in specs}
    for spec in specs:
        out.append(spec)
        if spec.control is not None and spec.control.label not in labels:
            out.append(spec.control)
            labels.add(spec.control.label)
    return out


def build_optimizers(specs: list[OptimizerSpec]) -> list[tuple[str, ZOOptimizer]]:
    """Call every factory (loading checkpoints, checking hyperparameters) and pair it with its label."""
    return [(spec.label, spec.factory()) for spec in specs]
