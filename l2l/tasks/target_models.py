"""Target classifiers for attack tasks and their checkpoints."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from l2l.common.paths import checkpoints_dir

MNIST_CHECKPOINT = "mnist_cnn.pt"


class CWMnistCNN(nn.Sequential):
    """The C&W MNIST architecture: conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10 (logits)."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 200), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(200, 200), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(200, 10),
        )  # fmt: skip


def mnist_checkpoint_path() -> Path:
    return checkpoints_dir() / MNIST_CHECKPOINT


def read_model_checkpoint(path: Path, what: str, command: str, required: set[str]) -> dict:
    """A trained model's raw checkpoint dict, with errors that say what is missing and how to get it.

    Args:
        path: the checkpoint file.
        what: what the model is, for messages (e.g. ``"target-model"``).
        command: the command that trains one (e.g. ``"python -m train.target_model"``).
        required: the keys such a checkpoint must hold.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"no {what} checkpoint at {str(path)!r}; train one with `{command}` "
            f"(or set L2L_CHECKPOINTS to the folder that holds {path.name})"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not a readable torch checkpoint: {err}") from err
    missing = required - set(ckpt)
    if missing:
        raise ValueError(f"{str(path)!r} is not a {what} checkpoint: it lacks {sorted(missing)}")
    return ckpt


def read_target_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict (``state_dict``, ``config``, ``heldout_accuracy``, ``version``)."""
    required = {"state_dict", "config", "heldout_accuracy"}
    return read_model_checkpoint(path, "target-model", "python -m train.target_model", required)


@lru_cache(maxsize=2)
def load_mnist_target_model(path: str | None = None) -> CWMnistCNN:
    """The trained MNIST target model in eval mode, with gradients switched off for its weights."""
    ckpt = read_target_checkpoint(Path(path) if path else mnist_checkpoint_path())
    model = CWMnistCNN(dropout=ckpt["config"].get("dropout", 0.5))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
