"""The disk's flush, back to back and after the client has worked a while: what a commit waits for.

    /work/main/.venv/bin/python -m bench.flush_gap [--dir /tmp] [--flushes 2000] [--rounds 4]
        [--gaps 0,0.1,0.2,0.5,1]

A Postgres commit waits for its WAL to be flushed (``fdatasync``). ``bench.commit_gap`` shows that the raw
INSERT + COMMIT, run back to back, slows down as soon as the client works between transactions, and that the
``COMMIT`` takes the slowdown. This takes Postgres out: it appends one 8 kB page at a time to a preallocated file
in ``--dir`` (put it on the disk that holds the Postgres data) and flushes it, the process busy for each of
``--gaps`` milliseconds between flushes (a busy loop: the CPU stays awake, only the disk sits idle), the gaps
alternating in rounds. It prints the median and 90th percentile of the flush for each gap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from rich.console import Console
from rich.table import Table

from bench.commit_gap import busy

PAGE = b"\x00" * 8192
FILE_BYTES = 64 << 20
WARM_UP = 20


class AppendLog:
    """A preallocated file written one page at a time, as the WAL is, wrapping around at its end."""

    def __init__(self, directory: str) -> None:
        self.fd, self.path = tempfile.mkstemp(prefix="flush_gap_", dir=directory)
        os.posix_fallocate(self.fd, 0, FILE_BYTES)
        os.fsync(self.fd)
        self.offset = 0

    def flush_after(self, gap_ms: float, count: int) -> list[float]:
        """Seconds of each of ``count`` flushes of one new page, the process busy ``gap_ms`` before each."""
        samples = []
        for i in range(WARM_UP + count):
            busy(gap_ms / 1000)
            os.pwrite(self.fd, PAGE, self.offset)
            self.offset = (self.offset + len(PAGE)) % FILE_BYTES
            start = time.perf_counter()
            os.fdatasync(self.fd)
            if i >= WARM_UP:
                samples.append(time.perf_counter() - start)
        return samples

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the file goes: the Postgres data's disk")
    parser.add_argument("--flushes", type=int, default=2000, help="per gap, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--gaps", default="0,0.1,0.2,0.5,1", help="the process busy between flushes, ms")
    args = parser.parse_args(argv)
    gaps = [float(g) for g in args.gaps.split(",")]
    samples: dict[float, list[float]] = {g: [] for g in gaps}
    log = AppendLog(args.dir)
    try:
        for r in range(args.rounds):
            for gap in gaps if r % 2 == 0 else reversed(gaps):
                samples[gap] += log.flush_after(gap, args.flushes // args.rounds)
    finally:
        log.close()
    table = Table(title=f"fdatasync of one appended 8 kB page in {args.dir} (us)")
    for column in ("busy between flushes", "median", "p90", "median beside back to back"):
        table.add_column(column, justify="right")
    floor = statistics.median(samples[gaps[0]])
    for gap in gaps:
        median = statistics.median(samples[gap])
        p90 = statistics.quantiles(samples[gap], n=10)[8]
        table.add_row(f"{gap:g} ms", f"{median * 1e6:.0f}", f"{p90 * 1e6:.0f}", f"{median / floor:.2f}x")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
