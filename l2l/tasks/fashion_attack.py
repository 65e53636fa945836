"""The ``fashion_attack`` family: the ``mnist_attack`` problem on a Fashion-MNIST target classifier.

The same C&W CNN, trained by ``python -m train.target_model --dataset fashion`` on 4,000 Fashion-MNIST
training images (``checkpoints/fashion_cnn.pt``), and the same loss (untargeted margin + c = 0.1 L1,
kappa = 0) and split sizes as ``mnist_attack``; instances are the correctly classified images of the
1,000 held-out training images (:mod:`l2l.tasks.fashion_data`). It is the cross-family transfer target
of papers/002 sec. 4.3: an optimizer meta-trained on MNIST attacks evaluated on another image family.

``fashion_attack_linf`` and ``fashion_attack_l2`` are the norm-ball families of
:mod:`l2l.tasks.mnist_attack_linf` on the same images; ``model=`` attacks another model of the
Fashion-MNIST zoo (:mod:`l2l.tasks.zoo`).
"""

from __future__ import annotations

from l2l.tasks.mnist_attack import MnistAttackFamily
from l2l.tasks.mnist_attack_linf import DEFAULT_L2_EPS, MnistL2AttackFamily, MnistLinfAttackFamily
from l2l.tasks.registry import register_family
from l2l.tasks.zoo.registry import ADVERSARIAL_EPS

#: the Fashion-MNIST L-inf radius of the attack literature, which its adversarially trained target
#: is trained at (the MNIST one, 0.3, erases much of a garment's texture)
DEFAULT_FASHION_EPS = ADVERSARIAL_EPS["fashion"]


@register_family("fashion_attack")
class FashionAttackFamily(MnistAttackFamily):
    """Untargeted attacks on held-out Fashion-MNIST images the target model gets right.

    Args:
        c: L1 distortion weight (papers/002: 0.1).
        kappa: confidence margin (0).
        sizes: instances in (train, val, test); None takes every image that remains.
        checkpoint: target-model file (default: ``checkpoints/fashion_cnn.pt``).
        eps: bound on the perturbation's ``norm`` (None: the image box alone).
        norm: ``linf`` or ``l2``, the norm that ``eps`` bounds.
        model: the attacked model of the Fashion-MNIST zoo (none: the shipped C&W CNN).
    """

    name = "fashion_attack"
    dataset = "fashion"


@register_family("fashion_attack_linf")
class FashionLinfAttackFamily(MnistLinfAttackFamily):
    """``mnist_attack_linf`` on ``fashion_attack``'s images: ||delta||_inf <= eps.

    Args:
        eps: L-inf radius of the perturbation (none: 0.1).
        kappa: confidence margin (0).
        sizes: instances in (train, val, test); None takes every image that remains.
        checkpoint: target-model file (default: ``checkpoints/fashion_cnn.pt``).
        model: the attacked model of the Fashion-MNIST zoo (none: the shipped C&W CNN).
    """

    name = "fashion_attack_linf"
    dataset = "fashion"
    default_eps = DEFAULT_FASHION_EPS


@register_family("fashion_attack_l2")
class FashionL2AttackFamily(MnistL2AttackFamily):
    """``mnist_attack_l2`` on ``fashion_attack``'s images: ||delta||_2 <= eps.

    Args:
        eps: L2 radius of the perturbation (none: 2.0, as MNIST's).
        kappa: confidence margin (0).
        sizes: instances in (train, val, test); None takes every image that remains.
        checkpoint: target-model file (default: ``checkpoints/fashion_cnn.pt``).
        model: the attacked model of the Fashion-MNIST zoo (none: the shipped C&W CNN).
    """

    name = "fashion_attack_l2"
    dataset = "fashion"
    default_eps = DEFAULT_L2_EPS
