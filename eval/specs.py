"""Parse an optimizer list such as ``zo_sgd,zo_adam,mine=checkpoints/x.pt`` into labeled factories.

Each comma-separated item is either

- a registered name (``zo_adam``): built by ``l2l.make_optimizer(name, task=<family>, q=q[, mu=mu])``
  (q and mu only for methods that have them),
  so the values tuned for that task family apply and the caller's ``q`` (and ``mu``, when given) win;
  the label is the name;
- ``label=path``: a saved optimizer loaded by ``l2l.load_optimizer(path)`` exactly as it was saved
  (a learned optimizer keeps its own q and mu; the overrides do not apply to it);
- ``label=path.pt#variant``: an ablation of a ZO-LSTM checkpoint (``no_query``, ``no_update``,
  ``guided_es``, ``untrained``);
- ``zo_lstm``, ``zo_lstm_no_query``, ``zo_lstm_no_update``, ``zo_lstm_guided_es``: the task's shipped
  ZO-LSTM checkpoint, or that ablation of it;
- ``label=policy.zip``: a ZO-RL sampling policy as the ``zo_rl`` optimizer (papers/003);
  ``label=policy.zip#untrained`` its untrained control, ``label=policy.zip#lstm`` the task's shipped
  ZO-LSTM sampling with it (ZO-RL-LSTM), ``label=policy.zip#lstm=zo_lstm.pt`` that ZO-LSTM instead,
  and ``#lstm_untrained[=zo_lstm.pt]`` the same ZO-LSTM sampling with an untrained policy;
- ``zo_rl``, ``zo_rl_lstm``: the task's shipped policy, alone or with the shipped ZO-LSTM.

Every trained ZO-LSTM and ZO-RL policy brings its untrained control (``<label>_untrained``) into the
comparison; for ZO-RL-LSTM that is the trained ZO-LSTM with an untrained policy (what the policy adds).
Policies load through :mod:`agents` (stable-baselines3), imported only when one is listed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import l2l
from l2l.learned import VARIANTS, load_zo_lstm
from l2l.learned.checkpoint import shipped_checkpoint
from l2l.optimizers.base import ZOOptimizer
from l2l.optimizers.registry import accepted_params, optimizer_class

#: ablations selectable by name; they load the task's shipped checkpoint (papers/002 sec. 4.4, app. B)
SHIPPED_VARIANTS = ("zo_lstm", "zo_lstm_no_query", "zo_lstm_no_update", "zo_lstm_guided_es")

#: the task's shipped ZO-RL policy, alone and as the shipped ZO-LSTM's direction sampler (papers/003)
SHIPPED_POLICIES = {"zo_rl": "", "zo_rl_lstm": "lstm"}
#: variants of a policy zip: as trained, its untrained control, sampling for a ZO-LSTM, or that control
POLICY_VARIANTS = ("", "untrained", "lstm", "lstm_untrained")

#: file endings that mark an unlabeled item as a checkpoint path rather than a mistyped name
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".zip")


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of a comparison.

    Attributes:
        label: the name it carries in tables, plots and JSON keys (unique within a comparison).
        source: the registered name or the checkpoint path it comes from.
        factory: builds the optimizer; called once per comparison, before any run starts.
    """

    label: str
    source: str
    factory: Callable[[], ZOOptimizer]


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
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(
            f"optimizer list {text!r} has an empty item; write names or label=path separated by single commas"
        )
    tuned = task if tuned_key is None else tuned_key
    specs = with_untrained_controls([_parse_item(item, task, q, mu, tuned) for item in items], task)
    labels = [spec.label for spec in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(
            f"optimizer list {text!r} repeats the label(s) {duplicates}; give each entry its own label "
            "(e.g. a=ckpt1.pt,b=ckpt2.pt)"
        )
    return specs


def _parse_item(
    item: str, task: str | None, q: int | None, mu: float | None, tuned: str | None
) -> OptimizerSpec:
    """One item of the list: ``name``, ``label=path`` or ``label=path#variant``; ``tuned``: the tuned key."""
    if "=" in item:
        label, _, path = (part.strip() for part in item.partition("="))
        if not label or not path:
            raise ValueError(
                f"optimizer item {item!r} needs both a label and a path, as in mine=checkpoints/x.pt"
            )
        path, _, variant = path.partition("#")
        if path.endswith(".zip"):
            return _policy_spec(label, path, variant, task)
        if variant:
            return _learned_spec(label, path, f"zo_lstm_{variant}", tuned)
        return OptimizerSpec(label, path, functools.partial(l2l.load_optimizer, path))
    if "/" in item or "\\" in item or item.endswith(_CHECKPOINT_SUFFIXES):
        raise ValueError(f"optimizer item {item!r} looks like a file; label it, as in mine={item}")
    if item in SHIPPED_VARIANTS:
        if task is None:
            raise ValueError(f"{item!r} needs a task to find its shipped checkpoint")
        return _learned_spec(item, str(shipped_checkpoint(task)), item, tuned)
    if item in SHIPPED_POLICIES:
        if task is None:
            raise ValueError(f"{item!r} needs a task to find its shipped policy")
        from agents.zo_rl import shipped_policy  # imports stable-baselines3: only when a policy is listed

        return _policy_spec(item, str(shipped_policy(task)), SHIPPED_POLICIES[item], task)
    optimizer_class(item)  # raises the registry's KeyError, which lists the known names
    shared = {k: v for k, v in {"q": q, "mu": mu}.items() if v is not None}
    overrides = accepted_params(item, shared)
    return OptimizerSpec(item, item, functools.partial(l2l.make_optimizer, item, task=tuned, **overrides))


def _learned_spec(label: str, path: str, variant: str, task: str | None) -> OptimizerSpec:
    if variant not in VARIANTS:
        known = ", ".join(v.removeprefix("zo_lstm_") for v in VARIANTS if v != "zo_lstm")
        raise ValueError(f"unknown ZO-LSTM variant in {label}={path}#...: {variant!r}; choose one of {known}")
    return OptimizerSpec(label, f"{path}#{variant}", functools.partial(load_zo_lstm, path, variant, task))


def _policy_spec(label: str, path: str, variant: str, task: str | None) -> OptimizerSpec:
    """A policy zip: ``zo_rl``, ``#untrained``, ``#lstm[=<ZO-LSTM .pt>]`` or ``#lstm_untrained[=<.pt>]``."""
    kind, _, lstm = variant.partition("=")
    if kind not in POLICY_VARIANTS or (lstm and not kind.startswith("lstm")):
        raise ValueError(
            f"unknown ZO-RL variant in {label}={path}#{variant}; write {path}, {path}#untrained, "
            f"{path}#lstm, {path}#lstm_untrained, or either lstm form with =<zo_lstm checkpoint .pt>"
        )
    if kind.startswith("lstm") and not lstm:
        if task is None:
            raise ValueError(
                f"{label}={path}#lstm needs a task to find its shipped ZO-LSTM; name one with #lstm=<.pt>"
            )
        lstm = str(shipped_checkpoint(task))
    source = f"{path}#{variant}" if variant else path
    return OptimizerSpec(label, source, functools.partial(_load_policy, path, kind, lstm))


def _load_policy(path: str, kind: str, lstm: str) -> ZOOptimizer:
    """Load a policy zip as ``zo_rl`` or as the sampler of the ZO-LSTM at ``lstm`` (or their controls)."""
    from agents.zo_rl import load_zo_rl, load_zo_rl_lstm  # imports stable-baselines3

    variant = "untrained" if kind.endswith("untrained") else "zo_rl"
    if kind.startswith("lstm"):
        return load_zo_rl_lstm(path, lstm, variant)
    return load_zo_rl(path, variant)


def with_untrained_controls(specs: list[OptimizerSpec], task: str | None) -> list[OptimizerSpec]:
    """``specs`` plus, after each trained ZO-LSTM or ZO-RL policy, its control ``<label>_untrained``.

    The control has the same architecture and options with random initial weights; only the gap to it
    shows what meta-training bought (DESIGN.md: an untrained LSTM can already match tuned ZO-Adam).
    """
    out, labels = [], {spec.label for spec in specs}
    for spec in specs:
        out.append(spec)
        path, _, variant = spec.source.partition("#")
        control = f"{spec.label}_untrained"
        if control in labels:
            continue
        if path.endswith(".pt") and variant in ("", "zo_lstm"):
            out.append(_learned_spec(control, path, "zo_lstm_untrained", task))
            labels.add(control)
        elif path.endswith(".zip"):
            kind, eq, lstm = variant.partition("=")
            if kind in ("", "lstm"):  # the same ZO-LSTM (if any) with an untrained policy
                untrained = f"{kind}_untrained" if kind else "untrained"
                out.append(_policy_spec(control, path, untrained + eq + lstm, task))
                labels.add(control)
    return out


def build_optimizers(specs: list[OptimizerSpec]) -> list[tuple[str, ZOOptimizer]]:
    """Call every factory (loading checkpoints, checking hyperparameters) and pair it with its label."""
    return [(spec.label, spec.factory()) for spec in specs]
