"""Registers the hypothesis profiles (ci, dev, long) and picks one when none is named.

``--hypothesis-profile=NAME`` (hypothesis' own pytest option) wins; otherwise ``ci`` under
``CI=true`` and ``dev`` elsewhere. Name the path when choosing a profile on the command line,
``pytest --hypothesis-profile=long tests/properties``, so pytest loads this file before the
option is read.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.properties._profiles import default_profile


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("hypothesis_profile", default=None):
        settings.load_profile(default_profile())
