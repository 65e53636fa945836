"""Deterministic, collision-free seeds for generated instances."""

from __future__ import annotations

import zlib

_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}


def instance_seed(family_seed: int, split: str, index: int) -> int:
    """A seed unique to (family seed, split, index): splits never share a generated instance."""
    return zlib.crc32(f"{family_seed}/{_SPLIT_CODE[split]}/{index}".encode())
