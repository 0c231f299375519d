"""The README's Python examples run as written and print what the README says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_python_examples_run_and_print_what_the_readme_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    example, shown = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", README, flags=re.S).groups()
    views = re.findall(r"```python\n(.*?)```", README, flags=re.S)[1]
    printed = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README example", "exec"), namespace)
    assert printed.getvalue() == shown
    from run_mailbox import MailboxService

    namespace["mailbox"] = MailboxService(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": "mailbox.db"}
    )
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(views, "README views example", "exec"), namespace)
    assert "call-1" not in out.getvalue(), "the decided ticket is no longer pending"
    assert "'done': 1" in out.getvalue()
