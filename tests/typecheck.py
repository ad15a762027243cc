"""The run-time checker of the library's jaxtyping annotations in the test suite.

jaxtyping's import hook (installed in ``conftest.py``) hands every function of ``bspm_jax``
(and every dataclass's ``__init__``) to :func:`typecheck`, with its annotations resolved.
Only annotations that name arrays (``Float[Array, "b n"]``, unions and tuples holding
them) are kept, so that every array's shape and dtype is checked with beartype against the
hints, consistently across a call (the ``b`` of one argument is the ``b`` of another and of
the result). Other hints are left to the code's own checks, which turn bad user input into
one ConfigError (the behaviour the tests assert).
"""

from __future__ import annotations

import typing
from typing import Any

from beartype import BeartypeConf, beartype
from jaxtyping import AbstractArray

_CHECK = beartype(conf=BeartypeConf(is_pep484_tower=True))


def _names_arrays(hint: Any) -> bool:
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        return True
    return any(_names_arrays(arg) for arg in typing.get_args(hint))


def typecheck(fn: Any) -> Any:
    """``fn`` checked by beartype on its array annotations only (unchanged when it has none)."""
    hints = getattr(fn, "__annotations__", None)
    if not isinstance(hints, dict):
        return fn
    kept = {name: hint for name, hint in hints.items() if not isinstance(hint, str) and _names_arrays(hint)}
    if not kept:
        return fn
    fn.__annotations__ = kept
    return _CHECK(fn)
