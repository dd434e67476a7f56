"""``python -m tests.load signalling|http [--long] [--consultations N] [--clients N] [--seconds S]``.

Without ``--long`` the short (CI) sizes; with it 1,000 consultations for 180 s measured, or
200 clients for 60 s. Prints the figures and PASS/FAIL; the exit code is 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from tests.load.http import HttpModel, run_http
from tests.load.signalling import SignallingModel, run_signalling


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run one load, print its figures; 0 on PASS."""
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("signalling", "http"))
    parser.add_argument(
        "--long", action="store_true", help="the long version (1,000 consultations / 200 clients)"
    )
    parser.add_argument(
        "--consultations", type=int, default=None, help="signalling: concurrent consultations"
    )
    parser.add_argument("--clients", type=int, default=None, help="http: concurrent clients")
    parser.add_argument("--seconds", type=float, default=None, help="the measured period")
    args = parser.parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    if args.kind == "signalling":
        model = SignallingModel.long() if args.long else SignallingModel()
        model = SignallingModel(
            **{
                **model.__dict__,
                **({"consultations": args.consultations} if args.consultations else {}),
                **({"seconds": args.seconds} if args.seconds else {}),
            }
        )
        lines = run_signalling(model).lines()
    else:
        http = HttpModel.long() if args.long else HttpModel()
        http = HttpModel(clients=args.clients or http.clients, seconds=args.seconds or http.seconds)
        lines = run_http(http).lines()
    for line in lines:
        console.print(line, markup=False)
    return 0 if lines[-1] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
