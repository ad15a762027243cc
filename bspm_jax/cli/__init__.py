"""The ``bspm`` command line: :mod:`.parser` reads the options, :mod:`.commands` calls the library,
:mod:`.output` formats what it returns."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import BSPMError
from .commands import COMMANDS
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bspm`` command; user errors print one line and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BSPMError as err:
        print(f"bspm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bspm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. head) stopped reading: end quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


__all__ = ["build_parser", "main"]
