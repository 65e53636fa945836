"""The target-model zoo of each data set, split like the images: surrogates and held-out targets.

A black-box attacker cannot differentiate its target. Whatever an attack learns or tunes must therefore
come from other models, the **surrogates** (meta-training, tuning, and any surrogate knowledge an attack
carries); the **held-out** targets are attacked at test time only. The split is this table: per data
set at least three held-out targets, among them the adversarially trained one and an architecture
family (depthwise-separable convolutions, ``mobilenet``) that no surrogate shares; the guard
(:mod:`l2l.tasks.zoo.guard`) refuses to load a held-out target outside an evaluation scope.

Each entry's ``command`` reproduces its checkpoint (``checkpoints/zoo/<dataset>_<name>.pt``; the C&W
CNN is the shipped ``checkpoints/mnist_cnn.pt`` / ``fashion_cnn.pt``, which every earlier result
attacks); its accuracies and training time are recorded in the checkpoint itself and tabled in
docs/results/target_models.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from l2l.common.paths import checkpoints_dir

Role = Literal["surrogate", "heldout"]
ROLES: tuple[Role, ...] = ("surrogate", "heldout")
#: the zoo's model attacked when a family is given no ``model`` (the shipped target)
DEFAULT_MODEL = "cw"
#: PGD training radii (Madry et al.'s MNIST radius; the usual Fashion-MNIST one)
ADVERSARIAL_EPS = {"mnist": 0.3, "fashion": 0.1}


@dataclass(frozen=True)
class ZooModel:
    """One trained target model of a zoo.

    Args:
        name: its name within the data set's zoo (``model=`` of the attack families).
        dataset: the data set it is trained on (``mnist`` or ``fashion``).
        arch: its architecture (:data:`l2l.tasks.zoo.architectures.ARCHITECTURES`).
        file: its checkpoint, relative to ``checkpoints/`` (or ``$L2L_CHECKPOINTS``).
        role: ``surrogate`` (meta-training, tuning) or ``heldout`` (evaluation only).
        options: the ``train.target_model`` options beyond ``--dataset`` and ``--arch`` that trained it.
    """

    name: str
    dataset: str
    arch: str
    file: str
    role: Role
    options: str = ""

    def path(self) -> Path:
        """Where its checkpoint lives."""
        return checkpoints_dir() / self.file

    @property
    def command(self) -> str:
        """The command that trains it and writes its file (``train.target_model``'s default ``--out``)."""
        arch = "" if self.arch == "cw" else f" --arch {self.arch}"
        return f"python -m train.target_model --dataset {self.dataset}{arch} {self.options}".rstrip()


def zoo_file(dataset: str, arch: str, adversarial: bool) -> str:
    """The checkpoint file (relative to ``checkpoints/``) of a zoo model: ``zoo/<dataset>_<arch>[_adv].pt``.

    Args:
        dataset: the data set it is trained on.
        arch: its architecture.
        adversarial: whether it is adversarially trained.
    """
    return f"zoo/{dataset}_{arch}{'_adv' if adversarial else ''}.pt"


#: one torch thread: the 2 cores are shared, and two threads contending with other processes ran convs
#: about ten times slower than one (measured on LeNet)
_ONE = "--threads 1"
#: Fashion-MNIST trains on more images than the shipped 4,000 (fashion_data.model_train_split), as many as
#: keep a run to minutes on 2 cores (MNIST has only its 4,000), without shifts and with less dropout: at
#: MNIST's settings (2-pixel shifts, dropout 0.5) LeNet underfit them (79.6% held out, 79.2% on its
#: training images, 5 epochs), and 83.4% without; the small networks afford 15 epochs
_FASHION = f"{_ONE} --train-images 20000 --shift 0 --dropout 0.2"
_FASHION_CONV = f"{_FASHION} --epochs 5"
_FASHION_SMALL = f"{_FASHION} --epochs 15"
_MNIST_ADV = f"{_ONE} --adversarial-eps {ADVERSARIAL_EPS['mnist']}"
_FASHION_ADV = f"{_FASHION_CONV} --adversarial-eps {ADVERSARIAL_EPS['fashion']}"

#: (name, arch, role, MNIST options, Fashion-MNIST options); the file is zoo_file(dataset, arch, adversarial)
_TABLE: tuple[tuple[str, str, Role, str, str], ...] = (
    ("mlp", "mlp", "surrogate", _ONE, _FASHION_SMALL),
    ("lenet", "lenet", "surrogate", _ONE, _FASHION_SMALL),
    ("wide", "wide", "surrogate", f"{_ONE} --epochs 20", _FASHION_CONV),
    ("resnet", "resnet", "heldout", f"{_ONE} --epochs 20", _FASHION_CONV),
    ("mobilenet", "mobilenet", "heldout", f"{_ONE} --epochs 20", _FASHION_CONV),
    ("lenet_adv", "lenet", "heldout", _MNIST_ADV, _FASHION_ADV),
)

ZOO: dict[str, dict[str, ZooModel]] = {
    dataset: {
        DEFAULT_MODEL: ZooModel(DEFAULT_MODEL, dataset, "cw", f"{dataset}_cnn.pt", "surrogate"),
        **{
            name: ZooModel(
                name, dataset, arch, zoo_file(dataset, arch, "adversarial" in opt[i]), role, opt[i]
            )
            for name, arch, role, *opt in _TABLE
        },
    }
    for i, dataset in enumerate(("mnist", "fashion"))
}


def zoo_model(dataset: str, name: str) -> ZooModel:
    """The zoo entry ``name`` of ``dataset`` (a ValueError lists the data set's models otherwise).

    Args:
        dataset: ``mnist`` or ``fashion``.
        name: a model name of that zoo.
    """
    if dataset not in ZOO:
        raise ValueError(f"dataset={dataset!r} has no target-model zoo; zoos: {', '.join(ZOO)}")
    if name not in ZOO[dataset]:
        raise ValueError(f"model={name!r} is not in the {dataset} zoo; its models: {', '.join(ZOO[dataset])}")
    return ZOO[dataset][name]


def zoo_names(dataset: str, role: Role | None = None) -> list[str]:
    """The model names of ``dataset``'s zoo in table order, only those of ``role`` if given.

    Args:
        dataset: ``mnist`` or ``fashion``.
        role: ``surrogate``, ``heldout`` or None (all).
    """
    return [name for name, entry in ZOO[dataset].items() if role is None or entry.role == role]


def heldout_files() -> set[Path]:
    """The resolved checkpoint paths of every held-out target (what the guard refuses to load)."""
    entries = [entry for models in ZOO.values() for entry in models.values()]
    return {entry.path().resolve() for entry in entries if entry.role == "heldout"}


#: model-list values that name a part of a zoo rather than its models
MODEL_PARTS: dict[str, Role] = {"heldout": "heldout", "surrogates": "surrogate"}


def parse_models(dataset: str, text: str) -> list[str]:
    """The models of ``dataset``'s zoo that ``text`` names: ``heldout`` or ``surrogates`` (that part, in
    zoo order) or a comma list of names.

    Raises:
        ValueError: an unknown name (the message lists the zoo), an empty or repeated item.
    """
    if text in MODEL_PARTS:
        return zoo_names(dataset, MODEL_PARTS[text])
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"models={text!r} has an empty or repeated item; list each model once")
    for name in names:
        zoo_model(dataset, name)
    return names
