"""What the registered methods are built on, and none of them: the base classes (``base``), shared
attack machinery (``search_attack``, ``attack_space``, ``population``, ``fista``, ``zoo``), the name
registry, the search spaces and the tuned values (``registry``, ``search_spaces``, ``tuned``, ``factory``)."""
