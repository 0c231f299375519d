"""CPU clocks for the benchmarks: this process's, and the local Postgres server's.

The server's is the CPU of every process named ``postgres`` on this machine (its backends, WAL writer,
checkpointer, autovacuum), read from ``/proc``, with the exited backends' that the postmaster reaped: it counts
only where Postgres runs beside the benchmark, as on the machines of docs/performance.md, and is ``None`` where no
such process can be read.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_S = 0.2


@dataclass(frozen=True)
class Clocks:
    client: float
    """This process's CPU (user and system, every thread), in seconds."""
    server: float | None
    """The CPU of every local Postgres process, in seconds (a tick is 10 ms: read it over long phases)."""

    def __sub__(self, earlier: Clocks) -> Clocks:
        server = None if self.server is None or earlier.server is None else self.server - earlier.server
        return Clocks(self.client - earlier.client, server)

    def __add__(self, other: Clocks) -> Clocks:
        server = None if self.server is None or other.server is None else self.server + other.server
        return Clocks(self.client + other.client, server)


def server_cpu() -> float | None:
    total, found = 0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # utime, stime and the children's: a backend that exits within a phase (pgqueuer's consumers connect
        # for each drain) takes its CPU out of /proc, but the postmaster reaps it into its own cutime and cstime
        total += sum(int(f) for f in fields[11:15])
        found = True
    return total / _TICKS if found else None


def client_cpu() -> float:
    """This process's CPU, user and system, every thread, in seconds (to the microsecond: ``os.times`` counts
    ticks of 10 ms, too coarse for one command)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def now() -> Clocks:
    return Clocks(client_cpu(), server_cpu())


class PhaseClocks:
    """``mark(phase)`` at the start of each phase and ``mark(None)`` at the end of the last one; ``phases``
    then holds each phase's clocks, added up over every round marked."""

    def __init__(self) -> None:
        self.phases: dict[str, Clocks] = {}
        self._open: tuple[str, Clocks] | None = None

    def mark(self, phase: str | None) -> None:
        if phase is None:
            time.sleep(SETTLE_S)  # backends closed at the end of the round: let the postmaster reap them
        taken = now()
        if self._open is not None:
            name, start = self._open
            spent = taken - start
            self.phases[name] = self.phases[name] + spent if name in self.phases else spent
        self._open = None if phase is None else (phase, taken)


def mark(clocks: PhaseClocks | None, phase: str | None) -> None:
    """``clocks.mark(phase)``, when a benchmark passed clocks."""
    if clocks is not None:
        clocks.mark(phase)
