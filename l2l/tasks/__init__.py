"""Problem families and instances, looked up by name (``make_family``, ``make_task``)."""

from l2l.tasks import (  # noqa: F401  (registration)
    binary,
    fashion_attack,
    imagenet_attack,
    mnist_attack,
    mnist_attack_linf,
    order_attack,
    quadratic,
)
from l2l.tasks.attack import AttackTask
from l2l.tasks.base import SPLITS, NormBall, Task, TaskFamily
from l2l.tasks.binary import BinaryClassificationTask
from l2l.tasks.quadratic import QuadraticTask
from l2l.tasks.registry import default_steps, family_names, make_family, make_task, register_family

__all__ = [
    "SPLITS",
    "AttackTask",
    "BinaryClassificationTask",
    "NormBall",
    "QuadraticTask",
    "Task",
    "TaskFamily",
    "default_steps",
    "family_names",
    "make_family",
    "make_task",
    "register_family",
]
