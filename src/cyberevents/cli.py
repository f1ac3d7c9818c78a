"""The entry point: parse the command line, then run the command (commands.py), every outcome an exit code.

Exit codes: 0 success; 1 the command ran but found a problem (run-once: some events failed, recorded, or the
cycle was cut off; check-db: schema not at head; score, report, export: nothing to show); 2 configuration or
database error, or a file that cannot be written; 3 run-once found another cycle running (another process holds
the cycle lock); 70 an unexpected error (a bug: the traceback is printed); 130 interrupted by Ctrl-C (SIGINT), at
any moment.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from .commandline import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every outcome is an exit code: a signal or an unexpected error at any moment included."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("cyberevents: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `generate | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except Exception:
        traceback.print_exc()
        print("cyberevents: internal error (the traceback above); please report it", file=sys.stderr)
        return 70


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before anything heavy is imported
    from .commands import run_command  # here, not at the top: the line above needs none of what it imports

    return run_command(args)
