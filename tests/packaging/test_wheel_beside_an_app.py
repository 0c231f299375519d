"""The wheel installs one package, run_mailbox, so an app with its own ``domain``, ``infrastructure``
and ``projections`` packages can embed the mailbox: both import as themselves.

Builds the wheel from this source tree, installs it (with its dependencies) into a fresh virtual
environment, and runs an app there that has packages of those names.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

APP_MAIN = """
import sys
from pathlib import Path

import domain, infrastructure, projections
from domain.mailbox import WHO as app_mailbox
from run_mailbox import MailboxService, ToolTicket

here = Path(__file__).parent
for package in (domain, infrastructure, projections):
    assert Path(package.__file__).parent.parent == here, package.__file__
assert app_mailbox == "the app's own domain.mailbox"

import run_mailbox.domain
site = Path(run_mailbox.__file__).parent.parent
assert Path(run_mailbox.domain.__file__).parent == site / "run_mailbox" / "domain"
for name in ("domain", "infrastructure", "projections"):
    assert not (site / name).exists(), f"{name} is installed at the top of site-packages"

for env in ({}, {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(here / "mailbox.db")}):
    mailbox = MailboxService(env=env)
    mailbox.submit("thread-1", "run-1", priority=10)
    claimed = mailbox.claim("thread-1", consumer_id="worker-1")
    mailbox.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    done = mailbox.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
    assert done.status.value == "acked" and mailbox.get_run("run-1").status.value == "done"
    mailbox.close()
print("ok", run_mailbox.__version__)
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], check=False, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_beside_an_app_with_its_own_domain_infrastructure_and_projections(tmp_path):
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT)
    (wheel,) = wheels.glob("run_mailbox-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"run_mailbox"}

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel)

    app = tmp_path / "app"
    for package in ("domain", "infrastructure", "projections"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(f"NAME = 'the app's {package}'\n".replace("'s", "\\'s"))
    (app / "domain" / "mailbox.py").write_text('WHO = "the app\'s own domain.mailbox"\n')
    (app / "main.py").write_text(textwrap.dedent(APP_MAIN))
    assert run(python, "main.py", cwd=app).startswith("ok ")
