"""The registry of every read model the projections maintain."""

from __future__ import annotations

from run_mailbox.projections import (
    canonical_feed,
    checkpoint_ranges,
    dispatch_queue,
    permission_resolutions,
    run_status,
)
from run_mailbox.projections.view import View

ALL_VIEWS: tuple[View, ...] = (
    checkpoint_ranges.VIEW,
    permission_resolutions.VIEW,
    dispatch_queue.VIEW,
    run_status.VIEW,
    canonical_feed.VIEW,
)


def view_by_name(name: str) -> View:
    """The view called ``name``; KeyError naming the known views when there is none."""
    for view in ALL_VIEWS:
        if view.name == name:
            return view
    known = ", ".join(v.name for v in ALL_VIEWS)
    raise KeyError(f"no view named {name!r} (known: {known})")
