"""The same Python's CPU back to back and after a pause: a submit on the in-memory recorder.

    /work/main/.venv/bin/python -m bench.pause_cpu [--submits 3000] [--rounds 4] [--pauses 0,0.5]

On Postgres a command's Python runs between waits for the server; in memory, back to back. This measures what
that alone does to the same code: each round submits ``--submits`` runs (each on a thread of its own) with the
thread asleep for each pause before each submit, and prints the thread's CPU per submit (the sleep is not
counted). Rounds alternate the pauses. A CPU that idles in the pause, or that the server's process used
meanwhile, comes back with its caches cold, and the same submit then costs more CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=3000, help="submits per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each pause, alternating")
    parser.add_argument("--pauses", default="0,0.5", help="milliseconds asleep before each submit, comma-separated")
    args = parser.parse_args()
    pauses = [float(p) / 1000 for p in args.pauses.split(",")]
    console = Console(width=120)
    cpu: dict[float, list[float]] = {p: [] for p in pauses}
    with ours.in_memory_service() as service:
        for i in range(100):
            service.submit(f"warm-up-{i}", f"warm-up-{i}")
        for r in range(args.rounds):
            for pause in pauses if r % 2 == 0 else pauses[::-1]:
                spent = 0.0
                for i in range(args.submits):
                    if pause:
                        time.sleep(pause)
                    start = time.thread_time()
                    service.submit(f"t{r}-{pause}-{i}", f"r{r}-{pause}-{i}")
                    spent += time.thread_time() - start
                cpu[pause].append(1e6 * spent / args.submits)
                console.log(f"round {r + 1}, {pause * 1000:g} ms pause: {cpu[pause][-1]:.0f} us of CPU a submit")
    table = Table(title=f"A submit's CPU on the in-memory recorder (us; median of {args.rounds} rounds, and range)")
    for column in ("asleep before each", "CPU a submit", "beside back to back"):
        table.add_column(column, justify="right")
    base = statistics.median(cpu[pauses[0]])
    for pause in pauses:
        median = statistics.median(cpu[pause])
        spread = f"{median:.0f} ({min(cpu[pause]):.0f}-{max(cpu[pause]):.0f})"
        table.add_row(f"{pause * 1000:g} ms", spread, f"{median / base:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
