"""Thread messages: content blocks, messages, and the message kind the canonical events use."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue

from run_mailbox.domain.values import Millis, Value


class Base64Source(Value):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(Value):
    type: Literal["url"]
    url: str


MediaSource = Annotated[Base64Source | UrlSource, Field(discriminator="type")]


class TextBlock(Value):
    type: Literal["text"]
    text: str


class ImageBlock(Value):
    type: Literal["image"]
    source: MediaSource


class DocumentBlock(Value):
    type: Literal["document"]
    source: MediaSource
    title: str | None = None


class AudioBlock(Value):
    type: Literal["audio"]
    source: MediaSource


class VideoBlock(Value):
    type: Literal["video"]
    source: MediaSource


class ToolUseBlock(Value):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JsonValue


class ToolResultBlock(Value):
    type: Literal["tool_result"]
    tool_use_id: str
    content: list[ContentBlock]


class ThinkingBlock(Value):
    type: Literal["thinking"]
    thinking: str


ContentBlock = Annotated[
    TextBlock | ImageBlock | DocumentBlock | AudioBlock | VideoBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]
ToolResultBlock.model_rebuild()

Role = Literal["system", "user", "assistant", "tool"]
Visibility = Literal["all", "internal"]


class Message(Value):
    """One message to append to a thread. ``message_id`` must be unique in its thread."""

    message_id: str
    role: Role
    content: list[ContentBlock]
    visibility: Visibility = "all"
    created_at: Millis | None = None

    @property
    def kind(self) -> str:
        return message_kind(self.role, self.visibility)

    def content_json(self) -> list[dict[str, Any]]:
        return [block.model_dump(mode="json", exclude_none=True) for block in self.content]


def message_kind(role: str, visibility: str) -> str:
    """The canonical message_kind of a role and visibility (spec payloads section 8)."""
    if role == "user":
        return "internal_user_input" if visibility == "internal" else "user_input"
    if role == "assistant":
        return "assistant_output"
    if role == "tool":
        return "tool_result"
    return "internal_system" if visibility == "internal" else "system"


class MessageSeqRange(Value):
    """A 1-based, inclusive range of committed message positions in a thread."""

    first: int = Field(ge=1)
    last: int = Field(ge=1)

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: MessageSeqRange) -> bool:
        return self.first <= other.last and other.first <= self.last
