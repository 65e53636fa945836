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


def read_target_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict (``state_dict``, ``config``, ``heldout_accuracy``, ``version``)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no target-model checkpoint at {str(path)!r}; train one with `python -m train.target_model` "
            "(or set L2L_CHECKPOINTS to the folder that holds mnist_cnn.pt)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not a readable torch checkpoint: {err}") from err
    missing = {"state_dict", "config", "heldout_accuracy"} - set(ckpt)
    if missing:
        raise ValueError(f"{str(path)!r} is not a target-model checkpoint: it lacks {sorted(missing)}")
    return ckpt


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
