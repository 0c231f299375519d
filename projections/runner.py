"""Keeps a view store up to date with the log: catch up page by page, then follow live.

The runner knows nothing of persistence: its caller gives it ``read_page(after, limit)``,
which returns decoded (position, event) pairs with positions after ``after``, and for live
following a ``subscribe(after)`` that yields the same pairs as they are recorded (on Postgres,
the library's LISTEN/NOTIFY subscription, decoded). Each page is one ``store.apply``, one
transaction; a page the store has already seen applies nothing, so several runners, or a
runner restarted after a crash, never apply an event twice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, runtime_checkable

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.view import RebuildBehind, RebuildFailed, ViewStore, handled_kinds

Pair = tuple[int, DomainEvent]
Kinds = tuple[type[DomainEvent], ...]
ReadPage = Callable[[int, int], Sequence[Pair]]


@runtime_checkable
class PageReader(Protocol):
    """A ``read_page`` in two steps: ``fetch`` the stored rows after a position (safe to call from
    another thread), then ``decode`` them into pairs. A runner given one fetches the next page
    while it applies the current one, and decodes only the events its view ``handles``."""

    def __call__(self, after: int, limit: int) -> Sequence[Pair]: ...

    def fetch(self, after: int, limit: int) -> Sequence[Any]: ...

    def decode(self, rows: Sequence[Any], kinds: Kinds | None = None) -> Sequence[Pair]:
        """The rows' events as pairs; with ``kinds``, only the events of those classes (the rest are not decoded)."""
        ...

    def last_position(self, rows: Sequence[Any]) -> int: ...  # of the last fetched row (rows are in log order)


class Page(NamedTuple):
    pairs: Sequence[Pair]  # the events the view is handed
    read: int  # how many log positions the page read, handed over or not
    last: int  # the last of them (0 for an empty page)


Subscribe = Callable[[int], Iterable[Pair]]
Progress = Callable[[int, int], None]  # (position reached, log events the page read)
ApplyObserver = Callable[[str, Page, Callable[[], int]], int]
"""Wraps each batch a runner applies: ``observer(view name, page, apply)`` calls ``apply()`` (one
transaction) and returns what it returns; for spans and metrics (``run_mailbox.instrument_views``)."""
_END = object()


class ViewRunner:
    def __init__(
        self,
        store: ViewStore,
        read_page: ReadPage | PageReader,
        batch_size: int = 1000,
        *,
        follow_batch_size: int = 100,
        poll_interval: float = 0.2,
        observer: ApplyObserver | None = None,
        read_ahead: bool = False,
    ) -> None:
        """``read_ahead``: with a ``PageReader``, ``catch_up`` fetches the next page on a thread of its
        own (one more connection) while it applies the current one; ``rebuild`` turns it on."""
        if batch_size < 1 or follow_batch_size < 1:
            raise ValueError("batch sizes must be positive")
        self.store = store
        self.read_page = read_page
        self.batch_size = batch_size
        self.follow_batch_size = follow_batch_size
        self.poll_interval = poll_interval
        self.observer = observer
        self.read_ahead = read_ahead

    def _apply(self, page: Page) -> int:
        if self.observer is None:
            return self.store.apply(page.pairs, page.last)
        return self.observer(self.store.view.name, page, lambda: self.store.apply(page.pairs, page.last))

    def _read(self, after: int, kinds: Kinds | None) -> Page:
        reader = self.read_page
        if isinstance(reader, PageReader):
            return _decoded(reader, reader.fetch(after, self.batch_size), kinds)
        pairs = reader(after, self.batch_size)
        return Page(pairs, len(pairs), max((position for position, _ in pairs), default=0))

    def catch_up(self, on_batch: Progress | None = None, until: int | None = None) -> int:
        """Applies every recorded event after the store's position, one transaction per page; returns
        how many. ``on_batch(position, read)`` is called after each page (the events it read, handed
        to the view or not).

        It stops at the first page shorter than ``batch_size``: that page reached the end of the log
        as it was when read (waiting for an empty page instead would never end while a writer
        commits between every two reads), or once it has applied position ``until``.
        """
        applied = 0
        after = self.store.position()
        reader = self.read_page if self.read_ahead and isinstance(self.read_page, PageReader) else None
        kinds = handled_kinds(self.store.view)
        with _fetch_ahead(self.store.view.name, reader, kinds) as fetch_ahead:
            page = self._read(after, kinds)
            while page.read:
                if page.last <= after:
                    raise RuntimeError(f"read_page({after}, ...) returned no position after {after}")
                final = page.read < self.batch_size or (until is not None and page.last >= until)
                ahead = None if final else fetch_ahead(page.last, self.batch_size)
                done = self._apply(page)
                applied += done
                after = page.last
                if on_batch is not None:
                    on_batch(after, page.read)
                if final:
                    break
                page = self._read(after, kinds) if ahead is None else ahead()
        return applied

    def wait_until(self, position: int, timeout: float = 10.0) -> None:
        """Catches up until the store has applied ``position``; TimeoutError when the log stays short of it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.store.position() >= position:
                return
            self.catch_up()
            if self.store.position() >= position:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"view {self.store.view.name!r} is at {self.store.position()}, not {position}")
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def follow(self, subscribe: Subscribe | None, stop: threading.Event) -> None:
        """Catches up, then applies new events in small batches until ``stop`` is set.

        With ``subscribe``, a pump thread reads the subscription into a queue and this thread
        applies whatever has arrived (up to ``follow_batch_size``) in one transaction; if the
        subscription has a ``stop()`` method it is called when ``stop`` is set. Without it, the
        runner polls ``read_page`` every ``poll_interval`` seconds.
        """
        self.catch_up()
        if subscribe is None:
            while not stop.is_set():
                if not self.catch_up():
                    stop.wait(self.poll_interval)
            return
        subscription = subscribe(self.store.position())
        inbox: queue.Queue[Any] = queue.Queue(maxsize=10 * self.follow_batch_size)
        pump = threading.Thread(target=_pump, args=(subscription, inbox, stop), daemon=True)
        pump.start()
        try:
            while not stop.is_set():
                batch, ended = _drain(inbox, self.follow_batch_size, self.poll_interval)
                if batch:
                    self._apply(Page(batch, len(batch), max(position for position, _ in batch)))
                if ended:
                    return
        finally:
            stopper = getattr(subscription, "stop", None)
            if callable(stopper):  # without one, the daemon pump stays blocked until the next event arrives
                stopper()
                pump.join(timeout=5.0)


Ahead = Callable[[], Page]


def _decoded(reader: PageReader, rows: Sequence[Any], kinds: Kinds | None) -> Page:
    """A fetched page: the events of ``kinds`` decoded (all without), and how far the rows reach."""
    return Page(reader.decode(rows, kinds), len(rows), reader.last_position(rows))


@contextmanager
def _fetch_ahead(
    view: str, reader: PageReader | None, kinds: Kinds | None
) -> Iterator[Callable[[int, int], Ahead | None]]:
    """``fetch_ahead(after, limit)`` starts fetching that page on a thread of its own and returns what
    waits for it and decodes it here; without a ``reader`` it starts nothing (None).

    The page's query and transfer overlap the store's round trips for the current one; decoding
    stays on the applying thread: a thread that decoded too would hold the GIL the applier needs
    after each of its round trips (measured: slower for views with several per page)."""
    if reader is None:
        yield lambda after, limit: None
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fetch-{view}") as pool:

        def fetch_ahead(after: int, limit: int) -> Ahead:
            future = pool.submit(reader.fetch, after, limit)
            return lambda: _decoded(reader, future.result(), kinds)

        try:
            yield fetch_ahead
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _pump(subscription: Iterable[Pair], inbox: queue.Queue[Any], stop: threading.Event) -> None:
    try:
        for pair in subscription:
            while not stop.is_set():
                try:
                    inbox.put(pair, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        inbox.put(_END)
    except BaseException as exc:  # handed to the applying thread, which raises it
        inbox.put(exc)


def _drain(inbox: queue.Queue[Any], limit: int, wait: float) -> tuple[list[Pair], bool]:
    """Up to ``limit`` pairs: waits ``wait`` seconds for the first, then takes what is already there."""
    batch: list[Pair] = []
    try:
        item = inbox.get(timeout=wait)
        while True:
            if item is _END:
                return batch, True
            if isinstance(item, BaseException):
                raise item
            batch.append(item)
            if len(batch) >= limit:
                return batch, False
            item = inbox.get_nowait()
    except queue.Empty:
        return batch, False


def rebuild(
    store: ViewStore,
    read_page: ReadPage | PageReader,
    batch_size: int = 1000,
    attempts: int = 5,
    on_batch: Progress | None = None,
    log_end: Callable[[], int] | None = None,
) -> int:
    """Replays the whole log into scratch tables and swaps them in; returns the position swapped in.

    The scratch store catches up again when a live runner moved the live view past it meanwhile,
    so readers never see the view go back in time. RebuildFailed when it never overtakes them.
    With ``log_end`` (the log's last position), each attempt reads no further than the end it saw
    when it began, so a rebuild slower than the writers fails after ``attempts`` instead of
    chasing them for ever.
    """
    scratch = store.begin_rebuild()
    runner = ViewRunner(scratch, read_page, batch_size, read_ahead=True)
    for _ in range(attempts):
        runner.catch_up(on_batch, until=None if log_end is None else log_end())
        try:
            store.swap_in(scratch)
        except RebuildBehind:
            continue
        return store.position()
    scratch.drop()
    raise RebuildFailed(store.view.name, attempts)
