"""The generated parts of the documentation: state diagrams, JSON Schemas and the service and command
reference tables, each generated from the code and checked in under ``docs/``.

``python -m run_mailbox.reference`` writes them; ``--check`` exits 1 naming the files that drifted
from the code (``tests/test_reference_docs.py`` does the same).
"""

from __future__ import annotations

from pathlib import Path

from run_mailbox.reference.diagrams import diagrams_page
from run_mailbox.reference.schemas import FOLDER, schema_files, schemas_page
from run_mailbox.reference.service_pages import commands_page, service_methods_page


def generated() -> dict[str, str]:
    """Every generated file: its path relative to the docs folder -> its text."""
    return {
        "reference/state-diagrams.md": diagrams_page(),
        "reference/service-methods.md": service_methods_page(),
        "reference/commands.md": commands_page(),
        "reference/schemas.md": schemas_page(),
        **schema_files(),
    }


def drifted(docs: Path) -> list[str]:
    """The generated files whose checked-in copy under ``docs`` differs from the code (or is
    missing), and schema files the code no longer makes."""
    files = generated()
    stale = [path for path, text in files.items() if not (docs / path).is_file() or (docs / path).read_text() != text]
    extra = [
        str(path.relative_to(docs))
        for path in sorted((docs / FOLDER).rglob("*.json"))
        if str(path.relative_to(docs)) not in files
    ]
    return stale + extra


def write(docs: Path) -> list[str]:
    """Writes every generated file under ``docs`` (and removes schema files no longer made); returns
    the paths it changed."""
    changed = drifted(docs)
    for path, text in generated().items():
        target = docs / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path in changed:
            target.write_text(text)
    for path in changed:
        if path.startswith(f"{FOLDER}/") and path not in generated():
            (docs / path).unlink()
    return changed
