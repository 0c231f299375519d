"""MailboxService: the eventsourcing Application that runs every mailbox command.

The commands live in groups (dispatch, permission, checkpoint commands and the queries);
this module composes them and chooses the persistence from the environment.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, Repository
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import get_topic

from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.model import Snapshot
from run_mailbox.domain.run import Run
from run_mailbox.domain.thread_log import ThreadLog
from run_mailbox.infrastructure.checkpoint_commands import CheckpointCommands
from run_mailbox.infrastructure.command_base import MAX_CONFLICT_RETRIES, Clock, wall_clock_ms
from run_mailbox.infrastructure.permission_commands import PermissionCommands
from run_mailbox.infrastructure.persistence.mapper import PydanticMapper
from run_mailbox.infrastructure.persistence.memory import MemoryMailboxRecorder
from run_mailbox.infrastructure.queries import MailboxQueries
from run_mailbox.infrastructure.settings import resolve_env


class MailboxService(PermissionCommands, CheckpointCommands, MailboxQueries, Application[UUID]):
    name = "MailboxService"
    env: ClassVar[dict[str, str]] = {"MAPPER_TOPIC": get_topic(PydanticMapper)}
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {ThreadMailbox: 50, Run: 50, ThreadLog: 50}
    snapshot_class = Snapshot

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        *,
        max_conflict_retries: int = MAX_CONFLICT_RETRIES,
    ) -> None:
        super().__init__(resolve_env(env))
        self.clock: Clock = clock or wall_clock_ms
        self.max_conflict_retries = max_conflict_retries
        self.unsnapshotted = Repository(event_store=self.events)
        self._tx_lock = threading.Lock()
        self._tx_count = 0

    def construct_recorder(self) -> Any:
        if isinstance(self.factory, POPOFactory):
            return MemoryMailboxRecorder()
        return super().construct_recorder()
