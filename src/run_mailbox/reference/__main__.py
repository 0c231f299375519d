"""``python -m run_mailbox.reference [--docs DIR] [--check]``: write (or check) the generated docs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from run_mailbox.reference import drifted, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m run_mailbox.reference", description=__doc__)
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs folder (default: ./docs)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file drifted")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(args.docs)
        for path in stale:
            print(f"out of date: {args.docs / path}", file=sys.stderr)
        if stale:
            print("regenerate with: python -m run_mailbox.reference", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.docs):
        print(f"wrote {args.docs / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
