"""The ``bspm`` command line (:func:`bspm_jax.cli.commands.main`)."""

from .commands import main

__all__ = ["main"]
