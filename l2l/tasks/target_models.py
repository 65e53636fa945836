"""Target classifiers for attack tasks, the data sets they are trained on, and their checkpoints.

``python -m train.target_model --dataset D`` trains the shipped target (:class:`CWMnistCNN`) of each data
set of :data:`TARGET_DATA`: MNIST (``mnist_attack`` and its norm-ball variants) and Fashion-MNIST
(``fashion_attack``); ``--arch`` trains the other architectures of the zoo (:mod:`l2l.tasks.zoo`). Each
data set splits into the images models train on and a held-out pool that attack instances come from.
A checkpoint records its architecture in its config (none recorded: the C&W CNN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from l2l.common.paths import checkpoints_dir
from l2l.tasks import fashion_data, mnist_data
from l2l.tasks.zoo.architectures import CWMnistCNN, build_architecture
from l2l.tasks.zoo.guard import check_target_access

__all__ = ["TARGET_DATA", "CWMnistCNN", "TargetData", "load_target_model", "read_target_checkpoint"]

MNIST_CHECKPOINT = "mnist_cnn.pt"
FASHION_CHECKPOINT = "fashion_cnn.pt"


@dataclass(frozen=True)
class TargetData:
    """One data set a target classifier is trained and attacked on.

    Args:
        name: its ``--dataset`` name in ``train.target_model``.
        checkpoint: the file name of its trained model in ``checkpoints/``.
        model_train_split: returns the first ``n`` (its argument; default: the shipped model's count)
            images [n, 1, 28, 28] in [0, 1] and labels that models train on, never a held-out one.
        max_train_images: the most images ``model_train_split`` can return.
        heldout_split: returns the held-out images and labels, the only ones attack instances use.
        heldout_ids: returns each held-out image's id in the data set's own numbering (``image_id``).
        title: the data set's name in messages.
    """

    name: str
    checkpoint: str
    model_train_split: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    max_train_images: int
    heldout_split: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    heldout_ids: Callable[[], torch.Tensor]
    title: str

    def checkpoint_path(self) -> Path:
        """Where its trained model lives (``checkpoints/`` or ``$L2L_CHECKPOINTS``)."""
        return checkpoints_dir() / self.checkpoint

    @property
    def train_command(self) -> str:
        """The command that trains its model (MNIST is the default data set, so it needs no option)."""
        return "python -m train.target_model" + ("" if self.name == "mnist" else f" --dataset {self.name}")


#: ``--dataset`` name -> data set; MNIST's images ids are positions in the shuffled 5,000 (mnist_data),
#: Fashion-MNIST's are rows of its 60,000 training images (fashion_data)
TARGET_DATA = {
    "mnist": TargetData(
        "mnist", MNIST_CHECKPOINT, mnist_data.model_train_split, mnist_data.N_MODEL_TRAIN,
        mnist_data.heldout_split,
        mnist_data.heldout_ids, "MNIST",
    ),
    "fashion": TargetData(
        "fashion", FASHION_CHECKPOINT, fashion_data.model_train_split, 60000 - fashion_data.N_HELDOUT,
        fashion_data.heldout_split,
        fashion_data.heldout_ids, "Fashion-MNIST",
    ),
}  # fmt: skip


def target_data(name: str) -> TargetData:
    """The data set ``name`` of :data:`TARGET_DATA` (a ValueError lists the names otherwise).

    Args:
        name: ``mnist`` or ``fashion``.
    """
    if name not in TARGET_DATA:
        raise ValueError(f"dataset={name!r} must be one of {', '.join(TARGET_DATA)}")
    return TARGET_DATA[name]


def mnist_checkpoint_path() -> Path:
    return TARGET_DATA["mnist"].checkpoint_path()


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


def read_target_checkpoint(path: Path, dataset: str = "mnist") -> dict:
    """The raw checkpoint dict (``state_dict``, ``config``, ``heldout_accuracy``, ``version``).

    Args:
        path: the checkpoint file.
        dataset: the data set it must have been trained on (a checkpoint that records none is MNIST's,
            as every one written before the ``--dataset`` option).
    """
    data = target_data(dataset)
    required = {"state_dict", "config", "heldout_accuracy"}
    ckpt = read_model_checkpoint(path, f"{data.title} target-model", data.train_command, required)
    trained_on = ckpt["config"].get("dataset", "mnist")
    if trained_on != dataset:
        raise ValueError(
            f"{str(path)!r} is a target model trained on {trained_on!r}, not {dataset!r}; train one with "
            f"`{data.train_command}`"
        )
    return ckpt


def load_target_model(dataset: str = "mnist", path: str | None = None) -> nn.Module:
    """The trained target model of ``dataset`` in eval mode, with gradients switched off for its weights.

    A held-out target of the zoo loads only where :func:`l2l.tasks.zoo.guard.heldout_targets_allowed`
    is open (:class:`~l2l.tasks.zoo.guard.HeldOutTargetError` otherwise), checked on every call, before
    the cache, so that a model loaded in an allowed scope is not handed out later outside it.

    Args:
        dataset: ``mnist`` or ``fashion`` (:data:`TARGET_DATA`).
        path: the checkpoint file (None: the data set's file in ``checkpoints/``).
    """
    resolved = Path(path) if path else target_data(dataset).checkpoint_path()
    check_target_access(resolved)
    return _load_target_model(dataset, str(resolved))


@lru_cache(maxsize=16)
def _load_target_model(dataset: str, path: str) -> nn.Module:
    """:func:`load_target_model` past its access check, cached per (data set, file)."""
    ckpt = read_target_checkpoint(Path(path), dataset)
    config = ckpt["config"]
    model = build_architecture(config.get("arch", "cw"), dropout=config.get("dropout", 0.5))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_mnist_target_model(path: str | None = None) -> nn.Module:
    """The trained MNIST target model (:func:`load_target_model` on ``mnist``)."""
    return load_target_model("mnist", path)
