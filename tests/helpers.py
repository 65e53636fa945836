"""Small helpers several test files share."""

from __future__ import annotations

from pathlib import Path

#: the repository root (tests/ sits in it)
ROOT = Path(__file__).resolve().parents[1]


def without_timings(obj):
    """``obj`` (parsed JSON) with every ``wall_s`` entry removed: the only figures that may differ between
    otherwise identical runs."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k != "wall_s"}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj
