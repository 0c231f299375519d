"""Mutation testing of ``domain/`` and ``projections/`` with the property suite as the only test.

    .venv/bin/python tests/mutation/run.py                  # the fixed sample (seed 11, 150 mutants), 2 workers
    .venv/bin/python tests/mutation/run.py --all            # every mutant (hours on two cores)
    .venv/bin/python tests/mutation/run.py --only 'domain/run.py:140:0'   # chosen mutants

The mutants are mutmut's (``mutmut.list_mutations`` / ``mutmut.mutate``, the engine its own
``mutmut run`` uses); this script runs them, because the package layout needs care: the mutated
folders (``domain/``, ``projections/``) are imported as ``run_mailbox.domain`` and
``run_mailbox.projections`` through a package-dir mapping. Each worker gets a private copy of the
tracked files and a *shadow package* (``<copy>/.shadow/run_mailbox``: symlinks to the copy's
folders) first on ``PYTHONPATH``, so the tests import the copy, never the work tree; the script
checks that (an import of a sabotaged module must fail) before it starts. Bytecode is neither
written nor read for the mutated folders (``PYTHONDONTWRITEBYTECODE``, caches removed), so a
mutant of the same size within the same second is never hidden by a stale ``.pyc``.

Each mutant: write the mutated file into the copy, run the test command (``pytest
tests/properties -x`` under the ``mutation`` hypothesis profile; Postgres and the one
non-derandomized test left out), restore. Exit status non-zero = killed; over the time limit =
timeout (killed too). The report (``--report``) holds the score and every survivor's diff; a
survivor listed in ``tests/mutation/equivalent.txt`` (file, the original line, mutmut's index,
and why) counts as equivalent, not as missed.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

try:
    from mutmut import ALL, Context, list_mutations, mutate
except ImportError:  # not a test dependency: the full run is a tool, not part of CI
    sys.exit("tests/mutation/run.py needs mutmut 2: .venv/bin/pip install 'mutmut==2.5.1'")

ROOT = Path(__file__).resolve().parents[2]
SCOPE = ("domain", "projections")
# The SQL view stores are not what the properties drive (their views run on the memory store);
# tests/projections covers them on SQLite and Postgres.
EXCLUDED = {
    "projections/stores/sqlite.py",
    "projections/stores/postgres.py",
    "projections/stores/postgres_sql.py",
    "projections/stores/postgres_write.py",
}
TEST_COMMAND = [
    *("-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutation"),
    # every test of tests/properties, the quick ones first (-x stops at the first failure)
    "tests/properties/test_limits.py",
    "tests/properties/test_fuzz_commands.py",
    "tests/properties/test_view_properties.py",
    "tests/properties/test_mailbox_state_machine.py",
    "tests/properties/test_replay_properties.py",
    *("-m", "not postgres", "-k", "not short_random"),
]
EQUIVALENT_FILE = ROOT / "tests" / "mutation" / "equivalent.txt"


@dataclass(frozen=True)
class Mutant:
    path: str
    line_number: int  # 0-based, as mutmut counts
    line: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line_number + 1}:{self.index}"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.path, self.line.strip(), self.index)


def scope_files(root: Path) -> list[str]:
    files = sorted(str(p.relative_to(root)) for folder in SCOPE for p in (root / folder).rglob("*.py"))
    return [f for f in files if f not in EXCLUDED]


def all_mutants(root: Path) -> list[Mutant]:
    found = []
    for path in scope_files(root):
        source = (root / path).read_text()
        for mid in list_mutations(Context(source=source, filename=path, mutation_id=ALL)):
            found.append(Mutant(path, mid.line_number, mid.line, mid.index))
    return found


def mutated_source(root: Path, mutant: Mutant) -> str:
    source = (root / mutant.path).read_text()
    mid = next(
        m
        for m in list_mutations(Context(source=source, filename=mutant.path, mutation_id=ALL))
        if (m.line_number, m.index) == (mutant.line_number, mutant.index)
    )
    text, performed = mutate(Context(source=source, filename=mutant.path, mutation_id=mid))
    assert performed == 1, mutant
    return text


def diff_line(root: Path, mutant: Mutant) -> str:
    before = (root / mutant.path).read_text().splitlines()
    after = mutated_source(root, mutant).splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b] or [mutant.line_number]
    return "\n".join(f"-{before[i]}\n+{after[i]}" for i in changed[:3])


def equivalents() -> dict[tuple[str, str, int], str]:
    """``path || original line (stripped) || index || why`` per line of equivalent.txt."""
    known = {}
    for raw in EQUIVALENT_FILE.read_text().splitlines() if EQUIVALENT_FILE.exists() else []:
        if raw.strip() and not raw.startswith("#"):
            path, line, index, why = (part.strip() for part in raw.split(" || ", 3))
            known[(path, line, int(index))] = why
    return known


class Worker:
    """A private copy of the repository whose modules the tests import instead of the work tree."""

    def __init__(self, base: Path, number: int) -> None:
        self.copy = base / f"w{number}"
        if self.copy.exists():
            shutil.rmtree(self.copy)
        tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split()  # fmt: skip
        for name in tracked:
            if (ROOT / name).is_file():
                (self.copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, self.copy / name)
        shadow = self.copy / ".shadow" / "run_mailbox"
        shadow.mkdir(parents=True)
        for entry in (self.copy / "src" / "run_mailbox").iterdir():
            (shadow / entry.name).symlink_to(entry)
        for folder in ("domain", "infrastructure", "projections"):
            (shadow / folder).symlink_to(self.copy / folder)
        self.env = {**os.environ, "PYTHONPATH": str(shadow.parent), "PYTHONDONTWRITEBYTECODE": "1"}
        self.env.pop("CI", None)

    def run(self, args: list[str], timeout: float | None = None) -> tuple[int | None, float, str]:
        for cache in self.copy.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, *args], check=False, cwd=self.copy, env=self.env,
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started, "timeout"
        return done.returncode, time.monotonic() - started, done.stdout[-2000:] + done.stderr[-2000:]

    def check_isolation(self) -> None:
        """The tests must import this copy, and a change to a mutated file must be seen."""
        code, _, out = self.run(
            ["-c", "import run_mailbox.domain.policies as p, os; print(os.path.realpath(p.__file__))"]
        )
        assert code == 0 and out.strip().startswith(str(self.copy)), f"the copy is not what is imported: {out}"
        target = self.copy / "domain" / "policies.py"
        original = target.read_text()
        target.write_text(original + "\nraise RuntimeError('sabotaged')\n")
        try:
            code, _, out = self.run(["-c", "import run_mailbox.domain.policies"])
            assert code != 0 and "sabotaged" in out, "a sabotaged module was not imported: mutants would be invisible"
        finally:
            target.write_text(original)

    def test(self, mutant: Mutant, timeout: float) -> tuple[str, float]:
        target = self.copy / mutant.path
        original = target.read_text()
        target.write_text(mutated_source(self.copy, mutant))
        try:
            code, took, _ = self.run(TEST_COMMAND, timeout)
        finally:
            target.write_text(original)
        return ("timeout" if code is None else "survived" if code == 0 else "killed"), took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=150, help="mutants drawn (fixed seed); ignored with --all")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--all", action="store_true", help="every mutant of the scope")
    parser.add_argument("--only", nargs="*", default=[], help="mutant names path:line:index")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".mutation")
    parser.add_argument("--report", type=Path, default=ROOT / ".mutation" / "report.md")
    options = parser.parse_args()

    everything = all_mutants(ROOT)
    if options.only:
        chosen = [m for m in everything if m.name in set(options.only)]
    elif options.all:
        chosen = everything
    else:
        chosen = sorted(random.Random(options.seed).sample(everything, min(options.sample, len(everything))),
                        key=lambda m: (m.path, m.line_number, m.index))  # fmt: skip
    print(f"{len(everything)} mutants in scope; testing {len(chosen)}", flush=True)

    workers = [Worker(options.workdir, n) for n in range(options.jobs)]
    for worker in workers:
        worker.check_isolation()
    code, baseline, out = workers[0].run(TEST_COMMAND)
    assert code == 0, f"the property suite fails without a mutant:\n{out}"
    timeout = baseline * 3 + 30
    print(f"baseline {baseline:.1f} s; time limit per mutant {timeout:.0f} s", flush=True)

    todo: queue.Queue[Mutant] = queue.Queue()
    for mutant in chosen:
        todo.put(mutant)
    results: dict[Mutant, tuple[str, float]] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def work(worker: Worker) -> None:
        while True:
            try:
                mutant = todo.get_nowait()
            except queue.Empty:
                return
            results[mutant] = worker.test(mutant, timeout)
            outcome, took = results[mutant]
            print(f"[{len(results)}/{len(chosen)}] {outcome:8} {took:5.1f}s {mutant.name}", flush=True)
            with lock:  # the report so far, rewritten after every mutant (a long run can be stopped)
                done = [m for m in chosen if m in results]
                try:
                    write_report(options, everything, done, dict(results), time.monotonic() - started, partial=True)
                except Exception as problem:  # a bad triage line must not stop a run of hours
                    print(f"report not written: {problem!r}", flush=True)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    write_report(options, everything, chosen, results, time.monotonic() - started, partial=False)
    return 0


def write_report(options: argparse.Namespace, everything: list[Mutant], chosen: list[Mutant],
                 results: dict[Mutant, tuple[str, float]], elapsed: float, partial: bool) -> None:  # fmt: skip
    known = equivalents()
    survivors = [m for m in chosen if results[m][0] == "survived"]
    equivalent = [m for m in survivors if m.key in known]
    missed = [m for m in survivors if m.key not in known]
    killed = len(chosen) - len(survivors)
    counted = len(chosen) - len(equivalent)
    score = 100.0 * killed / counted if counted else 100.0
    lines = [
        "# Mutation report" + (" (partial: the run is still going or was stopped)" if partial else ""),
        "",
        f"Command: `{' '.join(sys.argv)}` ({len(everything)} mutants in scope, {len(chosen)} tested, "
        f"{options.jobs} workers, {elapsed / 60:.1f} min).",
        f"Test command: `python {' '.join(TEST_COMMAND)}`",
        "",
        f"- killed: {killed} (of which timeouts: {sum(results[m][0] == 'timeout' for m in chosen)})",
        f"- survived: {len(survivors)} ({len(equivalent)} triaged as equivalent, {len(missed)} not)",
        f"- **score: {killed} / {counted} = {score:.1f}%** of the non-equivalent mutants killed",
        "",
        "## Survivors not triaged as equivalent" if missed else "## No untriaged survivor",
    ]
    for mutant in missed:
        lines += ["", f"### `{mutant.name}`", "", "```diff", diff_line(ROOT, mutant), "```"]
    lines += ["", "## Survivors triaged as equivalent"]
    for mutant in equivalent:
        lines += ["", f"- `{mutant.name}`: {known[mutant.key]}", "", "```diff", diff_line(ROOT, mutant), "```"]
    options.report.parent.mkdir(parents=True, exist_ok=True)
    options.report.write_text("\n".join(lines) + "\n")
    print(f"score {score:.1f}% ({killed}/{counted}); report: {options.report}")


if __name__ == "__main__":
    sys.exit(main())
