"""Fixtures shared by the projection framework tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projections._toy_view import StoreFactory


@pytest.fixture
def make_store(env: dict[str, str], service: Any, tmp_path: Path) -> Iterator[StoreFactory]:
    """Builds toy-view stores on the test's backend; closes them after the test."""
    factory = StoreFactory(env, service, tmp_path)
    yield factory
    factory.close()
