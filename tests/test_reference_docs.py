"""The reference documentation: the generated pages, diagrams and JSON Schemas match the code; every
canonical event ever rendered validates against the typed models the schemas come from; the public
API is documented; and the site builds in strict mode."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import run_mailbox
from run_mailbox import MailboxService
from run_mailbox.projections.payloads import ANY_EVENT, ENVELOPES, PAYLOADS
from run_mailbox.reference import drifted, generated
from run_mailbox.reference.__main__ import main as reference_main
from tests.unit.test_transitions import Driver

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*/canonical.jsonl.gz"))
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_the_checked_in_diagrams_tables_and_schemas_match_the_code():
    assert drifted(DOCS) == [], "regenerate with: python -m run_mailbox.reference"


def test_the_generator_writes_and_then_checks_clean(tmp_path, capsys):
    assert reference_main(["--docs", str(tmp_path), "--check"]) == 1
    assert reference_main(["--docs", str(tmp_path)]) == 0
    assert reference_main(["--docs", str(tmp_path), "--check"]) == 0
    (tmp_path / "reference" / "state-diagrams.md").write_text("stale")
    (tmp_path / "schemas" / "payloads" / "Gone.schema.json").write_text("{}")
    assert reference_main(["--docs", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "state-diagrams.md" in err and "Gone.schema.json" in err
    reference_main(["--docs", str(tmp_path)])
    assert not (tmp_path / "schemas" / "payloads" / "Gone.schema.json").exists()
    assert drifted(tmp_path) == []


def test_every_schema_file_is_json_schema_2020_12_with_a_title():
    for path, text in generated().items():
        if path.endswith(".json"):
            schema = json.loads(text)
            assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path
            assert schema["title"] and schema["description"], path
    union = json.loads(generated()["schemas/canonical-event.schema.json"])
    assert union["discriminator"]["propertyName"] == "kind"
    assert set(union["discriminator"]["mapping"]) == set(PAYLOADS)


@pytest.mark.parametrize("log", GOLDEN, ids=lambda p: p.parent.name)
def test_every_event_of_the_golden_logs_validates_against_its_kind(log):
    with gzip.open(log, "rt") as lines:
        kinds = Counter(ANY_EVENT.validate_json(line).kind for line in lines)
    assert set(kinds) == set(PAYLOADS)  # the golden logs hold every kind


def test_every_event_of_fresh_runs_validates_and_a_wrong_payload_does_not():
    driver = Driver(3)
    for _ in range(300):
        driver.step()
    service: MailboxService = driver.service
    service.submit("blocks", "run-blocks")
    blocks = [
        {"type": "text", "text": "hi"},
        {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA=="}},
        {"type": "document", "source": {"type": "url", "url": "https://example.org/a.pdf"}, "title": "A"},
        {"type": "audio", "source": {"type": "url", "url": "https://example.org/a.mp3"}},
        {"type": "video", "source": {"type": "url", "url": "https://example.org/a.mp4"}},
        {"type": "tool_use", "id": "u1", "name": "shell", "input": {"cmd": "ls"}},
        {"type": "tool_result", "tool_use_id": "u1", "content": [{"type": "text", "text": "a.txt"}]},
        {"type": "thinking", "thinking": "hmm"},
    ]
    for role in ("system", "user", "assistant", "tool"):
        message = {"message_id": f"m-{role}", "role": role, "content": blocks, "visibility": "internal"}
        service.commit_messages("blocks", "run-blocks", [message])
    kinds: Counter[str] = Counter()
    for envelope in service.iter_canonical_events():
        line = envelope.to_json_line()
        kinds[ANY_EVENT.validate_json(line).kind] += 1
        wrong = json.loads(line)
        wrong["payload"]["unexpected"] = 1
        with pytest.raises(ValueError):
            ENVELOPES[envelope.kind].model_validate(wrong)
    assert kinds["MessageCommitted"] >= 4 and kinds["DispatchClaimed"] > 0
    service.close()


def test_every_name_of_the_public_api_is_in_the_reference():
    documented = set()
    for page in (DOCS / "reference").glob("*.md"):
        documented |= set(re.findall(r"^::: run_mailbox\.(\w+)", page.read_text(), flags=re.MULTILINE))
    assert set(run_mailbox.__all__) - {"__version__"} - documented == set()


def test_the_state_diagrams_name_every_status():
    page = (DOCS / "reference" / "state-diagrams.md").read_text()
    for status in [*run_mailbox.DispatchStatus, *run_mailbox.RunStatus]:
        assert f"    {status.value} -->" in page or f"--> {status.value}" in page, status


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path):
    """What CI runs as docs/build.sh: any warning (a broken link, an unknown reference) fails."""
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        if CI:
            pytest.fail("the docs extra is required under CI: pip install -e '.[docs]'")
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "schemas" / "canonical-event.schema.json").is_file()
    commands = (tmp_path / "site" / "reference" / "commands" / "index.html").read_text()
    assert 'id="run_mailbox.Submit"' in commands and "Queues a new run on its thread" in commands
    guide = (tmp_path / "site" / "guide-asyncio" / "index.html").read_text()
    assert "class AgentServer" in re.sub(r"<[^>]+>", "", guide)  # the example is included, not a marker
