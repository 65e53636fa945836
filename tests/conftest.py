"""Shared fixtures: pinned threads (bit-for-bit reproducibility) and the MNIST attack family."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_family():
    import l2l

    return l2l.make_family("mnist_attack")


@pytest.fixture
def quadratic_task():
    import l2l

    return l2l.make_task("quadratic", split="test", index=0)
