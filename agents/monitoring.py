"""Watching a ZO-RL training: stable-baselines3's metrics to wandb, and a tqdm progress bar.

stable-baselines3 records its metrics (``train/actor_loss``, ``train/critic_loss``,
``rollout/ep_rew_mean``, the agent's ``zo_rl/rho`` ...) in its own logger; ``wandb``'s SB3 integration
only picks them up through tensorboard files, which this project does not install. :class:`WandbWriter`
is a logger output format that sends every dump straight to a wandb run instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter
from tqdm import tqdm


class WandbWriter(KVWriter):
    """A stable-baselines3 logger output that logs each dump's numbers to ``run`` at the dump's step.

    Args:
        run: a wandb run (``wandb.init(...)``).
    """

    def __init__(self, run: Any):
        self.run = run

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        row = {
            key: float(value)
            for key, value in key_values.items()
            if isinstance(value, int | float | np.number) and not _excluded(key_excluded.get(key))
        }
        if row:
            self.run.log(row, step=int(step))

    def close(self) -> None:
        """Nothing to close: the run is finished by whoever started it."""


def _excluded(formats: Any) -> bool:
    return formats is not None and "wandb" in (formats if isinstance(formats, tuple) else (formats,))


class TqdmCallback(BaseCallback):
    """A tqdm bar over environment steps, with the warm-start state and the latest note in its postfix.

    Args:
        total: the step count the bar runs to.
        initial: steps already done (a resumed training).
    """

    def __init__(self, total: int, initial: int = 0):
        super().__init__()
        self.total, self.initial = total, initial
        self.note = ""
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.initial, unit="step", desc="ddpg")

    def _on_step(self) -> bool:
        assert self.bar is not None
        self.bar.update(self.model.num_timesteps - self.bar.n)
        if self.n_calls % 50 == 0:
            rho = getattr(self.model, "rho_mean", None)
            phase = "policy" if getattr(self.model, "switched", True) else f"warm rho {rho or 0:.3f}"
            self.bar.set_postfix_str(f"{phase} {self.note}".strip())
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
