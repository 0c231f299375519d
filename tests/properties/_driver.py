"""The one way the machine runs a command, and what it checks around it.

``execute``: the oracle predicts the outcome from the model, the command runs, and then

- a refusal (a ``MailboxError``) must have written nothing and recorded no idempotency key,
  except ``DispatchSuperseded`` and ``ResumeFailed``, the documented refusals that write
  (docs/decisions/0004, 0008);
- the outcome must be the predicted one (the exact refusal type, or a result that passes the
  oracle's checks), and a command predicted to change nothing must write no event;
- the model is refreshed from what the command wrote (the invariants then run).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar
from uuid import UUID

from hypothesis.stateful import RuleBasedStateMachine

from run_mailbox.domain.errors import DispatchSuperseded, InvalidArgument, MailboxError, ResumeFailed
from run_mailbox.infrastructure.service import MailboxService
from tests.properties import _backends, _invariants, _refusals
from tests.properties._model import Keyed, Model, Observed
from tests.properties._oracle import PREDICT, Expect
from tests.properties._vocabulary import Clock, Refused, set_running

WRITING_REFUSALS = (DispatchSuperseded, ResumeFailed)
UNKEYED = {"repair_checkpoints"}  # a maintenance pass, not a command a client retries: it takes no key


class CommandDriver(RuleBasedStateMachine):
    """Runs commands against a fresh service and checks each outcome against the oracle."""

    backend = staticmethod(_backends.memory)
    service_class: ClassVar[type[MailboxService]] = MailboxService

    def __init__(self) -> None:
        super().__init__()
        set_running(self)
        # Ids the service generates come from a counter, so a command list replays exactly
        # (claim order breaks ties by dispatch id; random ids would make shrinking flaky).
        counter = itertools.count(1)
        self.clock = Clock()
        self._store = self.backend()
        self.service = self.service_class(
            env=self._store.__enter__(), clock=self.clock, id_factory=lambda: str(UUID(int=next(counter)))
        )
        self.model = Model()
        self.observed = Observed()
        self._healthy = True

    def teardown(self) -> None:
        try:
            if self._healthy:
                self.at_end()
        finally:
            self.service.close()
            self._store.__exit__(None, None, None)

    def at_end(self) -> None:
        _invariants.everything_agrees(self.service, self.model)

    def after_command(self, command: str, kwargs: dict[str, Any], outcome: Any, key: str | None) -> None:
        """Hook for subclasses: ``self.observed`` holds what the command wrote, ``key`` is the
        idempotency key it was first issued with (None without one, or when re-issued)."""

    def wants_key(self, keyed: bool) -> bool:
        return keyed

    # ------------------------------------------------------------------ the one way a command runs

    def log_length(self) -> int:
        return int(self.service.recorder.max_notification_id() or 0)

    def execute(self, command: str, kwargs: dict[str, Any], keyed: bool = False, expect: Expect | None = None) -> Any:
        self._healthy = False
        expect = expect or PREDICT[command](self.model, self.clock.now, kwargs)
        key = None  # a fresh key, recorded with the result (a re-issue passes its key in kwargs)
        if "idempotency_key" not in kwargs and command not in UNKEYED and self.wants_key(keyed):
            key = self.model.fresh("key-")
        call = kwargs if key is None else {**kwargs, "idempotency_key": key}
        before = self.log_length()
        self.model.checked, self.model.new_messages = set(), []
        dispatches_before, runs_before = dict(self.model.dispatches), dict(self.model.runs)
        try:
            outcome: Any = getattr(self.service, command)(**call)
        except MailboxError as error:
            outcome = Refused(error)
        wrote = self.log_length() - before
        self.observed = self.model.observe(self.service)
        label = f"{command}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
        if isinstance(outcome, Refused):
            self._check_refusal(label, outcome.error, expect, wrote, key, kwargs)
        else:
            self._check_success(label, outcome, expect, wrote)
            if key is not None:  # recorded under the command's name, which an operator looks it up by
                stored = self.service.tables.find_idempotency(key)
                assert stored is not None and stored.command == command, f"{label}: its key is recorded as {stored}"
                self.model.keyed.append(Keyed(key, command, kwargs, outcome))
        m = self.model
        changed = {("dispatch", i) for i in self.observed.dispatches if dispatches_before.get(i) != m.dispatches[i]}
        changed |= {("run", i) for i in self.observed.runs if runs_before.get(i) != self.model.runs[i]}
        unexpected = changed - self.model.checked
        assert not unexpected, f"{label} changed records the oracle did not expect to change: {sorted(unexpected)}"
        self.after_command(command, kwargs, outcome, key)
        self._healthy = True
        return outcome

    def _check_refusal(
        self, label: str, error: MailboxError, expect: Expect, wrote: int, key: str | None, kwargs: dict[str, Any]
    ) -> None:
        if isinstance(error, WRITING_REFUSALS):
            assert wrote > 0, f"{label}: {type(error).__name__} must record what it found, wrote nothing"
        else:
            assert wrote == 0, f"{label} was refused ({error!r}) yet wrote {wrote} events"
        if key is not None:
            assert self.service.tables.find_idempotency(key) is None, f"{label}: refused, yet its key was recorded"
        wanted = " or ".join(e.__name__ for e in expect.refusal) or "success"
        assert type(error) in expect.refusal, f"{label} was refused with {error!r}; expected {wanted} ({expect.why})"
        if expect.then is not None:
            expect.then(error)
        _refusals.check_subject(label.split("(", maxsplit=1)[0], kwargs, error, self.model)
        if isinstance(error, InvalidArgument):  # it names the argument (or a part of it) and its value
            top = error.field.split("[")[0].split(".")[0]
            assert not error.reason.startswith("Value error"), f"{label}: pydantic's wrapper in {error.reason!r}"
            assert top in kwargs or top == "arguments", f"{label}: InvalidArgument names {error.field!r}"
            if error.field in kwargs and not isinstance(kwargs[error.field], (list, dict)):
                assert error.value == kwargs[error.field], f"{label}: InvalidArgument shows {error.value!r}"

    def _check_success(self, label: str, result: Any, expect: Expect, wrote: int) -> None:
        if expect.refusal:
            wanted = " or ".join(e.__name__ for e in expect.refusal)
            raise AssertionError(f"{label} returned {result!r}; expected a refusal: {wanted} ({expect.why})")
        if expect.writes is False:
            assert wrote == 0, f"{label} should change nothing ({expect.why}) but wrote {wrote} events"
        elif expect.writes:
            assert wrote > 0, f"{label} succeeded without writing an event"
        if expect.then is not None:
            expect.then(result)
