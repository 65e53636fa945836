"""Where the project's shipped files live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def checkpoints_dir() -> Path:
    """The folder of shipped weights: ``$L2L_CHECKPOINTS`` if set, else ``checkpoints/`` of the checkout."""
    return Path(os.environ.get("L2L_CHECKPOINTS", REPO_ROOT / "checkpoints"))
