"""The console script ``babysit`` and ``python -m babysit``.

The signal handlers go in first, before the command line's imports (about a
second of them), so that a Ctrl-C or a SIGTERM in the first moments ends like
one at any other time: ``interrupted`` on stderr, exit 130 (see
:mod:`babysit.interrupts`). This module imports nothing else up front.
"""

import sys


def main(argv=None) -> None:
    try:
        from babysit import interrupts

        interrupts.install()
        from babysit.cli import main as cli_main

        interrupts.raise_if_received()
    except KeyboardInterrupt:
        from babysit import interrupts

        interrupts.stopping()
        sys.stderr.write("interrupted\n")
        interrupts.finish(130)
    try:
        cli_main(argv)
    except SystemExit as exit_:
        interrupts.finish(exit_.code)   # see interrupts.finish: nothing after the command changes its exit


if __name__ == "__main__":
    main()
