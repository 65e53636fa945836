"""Choosing the torch device a run lives on (``--device cpu|cuda``).

A seed reproduces a trajectory bit for bit *per device*: a CUDA ``torch.Generator`` draws a different
stream than a CPU one with the same seed, and CUDA kernels round differently, so a run on ``cuda`` is
reproducible on ``cuda`` but is not the CPU trajectory. CPU is the default and what the tests pin.
"""

from __future__ import annotations

import torch

#: the values ``--device`` accepts
DEVICES = ("cpu", "cuda")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device named by ``device`` (None: cpu), refusing one this machine does not have.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a ``torch.device``, or None for the CPU.

    Raises:
        ValueError: an unknown device name, or ``cuda`` where ``torch.cuda.is_available()`` is False.
    """
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}") from err
    if resolved.type not in DEVICES:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device here; use --device cpu")
    return resolved


def generator_on(device: str | torch.device, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (it must live where its draws do).

    Args:
        device: where the tensors it draws are made.
        seed: the seed; the stream it gives differs between CPU and CUDA.
    """
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (cpu for a module without parameters).

    Args:
        module: a torch module.
    """
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


#: the ``--help`` text of every command's ``--device`` option
DEVICE_HELP = (
    "torch device of the tasks, their models and the optimizers: cpu or cuda (cuda:N); a seed "
    "reproduces results bit for bit per device, and cpu is what the tests pin"
)
