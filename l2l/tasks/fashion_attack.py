"""The ``fashion_attack`` family: the ``mnist_attack`` problem on a Fashion-MNIST target classifier.

The same C&W CNN, trained by ``python -m train.target_model --dataset fashion`` on 4,000 Fashion-MNIST
training images (``checkpoints/fashion_cnn.pt``), and the same loss (untargeted margin + c = 0.1 L1,
kappa = 0) and split sizes as ``mnist_attack``; instances are the correctly classified images of the
1,000 held-out training images (:mod:`l2l.tasks.fashion_data`). It is the cross-family transfer target
of papers/002 sec. 4.3: an optimizer meta-trained on MNIST attacks evaluated on another image family.
"""

from __future__ import annotations

from l2l.tasks.mnist_attack import MnistAttackFamily
from l2l.tasks.registry import register_family


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
    """

    name = "fashion_attack"
    dataset = "fashion"
