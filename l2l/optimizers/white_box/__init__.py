"""White-box references (``white_box = True``): they read true gradients from the oracle
(``oracle.value_and_grad``), so they bound what a black-box method could reach; never black-box rows."""

from l2l.optimizers.white_box import fo_ead, fo_ngd, fo_pgd  # noqa: F401  (registration)
