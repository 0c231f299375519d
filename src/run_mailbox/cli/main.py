"""The ``mailbox`` console script: the typer app with every command registered."""

from __future__ import annotations

from run_mailbox.cli import (
    demo_command,
    log_commands,
    operator_commands,
    status_commands,
    view_commands,
    worker_command,
)
from run_mailbox.cli.app import app

__all__ = [
    "app",
    "demo_command",
    "log_commands",
    "operator_commands",
    "status_commands",
    "view_commands",
    "worker_command",
]

if __name__ == "__main__":
    app()
