"""The package version, in a module of its own so that any l2l module can read it without importing the
package ``l2l`` (whose ``__init__`` imports nearly everything, which would make an import cycle)."""

__version__ = "0.1.0"
