"""What crosses between services: versioned pydantic messages, JSON on the wire.

Every contract has a `kind` and a `version`. On a Redis stream an entry has three fields:
`kind`, `v` and `body` (the JSON of the message); as an arq job argument it is the same envelope as
a dict. A consumer decodes with `decode`, which refuses kinds and versions it does not know, so a
producer that moves ahead is noticed instead of misread. Change a contract by adding a new version
beside the old one; retire the old one only when nothing produces it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

EVENTS_STREAM = "dasi:events"


class UnknownContract(ValueError):
    pass


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str]
    version: ClassVar[int]

    def to_stream_fields(self) -> dict[str, str]:
        return {"kind": self.kind, "v": str(self.version), "body": self.model_dump_json()}

    def to_job_payload(self) -> dict[str, Any]:
        return {"kind": self.kind, "v": self.version, "body": self.model_dump(mode="json")}


_REGISTRY: dict[tuple[str, int], type[Contract]] = {}
C = TypeVar("C", bound=type[Contract])


def register(cls: C) -> C:
    key = (cls.kind, cls.version)
    if key in _REGISTRY:
        raise RuntimeError(f"contract {key} registered twice")
    _REGISTRY[key] = cls
    return cls


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(envelope: Mapping[Any, Any]) -> Contract:
    """Decode a stream entry's fields or a job payload."""
    fields = {_text(k): v for k, v in envelope.items()}
    try:
        key = (_text(fields["kind"]), int(_text(fields["v"])))
    except (KeyError, ValueError) as exc:
        raise UnknownContract(f"not a contract envelope: {sorted(fields)}") from exc
    cls = _REGISTRY.get(key)
    if cls is None:
        raise UnknownContract(f"unknown contract {key[0]} v{key[1]}")
    body = fields.get("body")
    if isinstance(body, str | bytes):
        return cls.model_validate_json(body)
    return cls.model_validate(body)


@register
class EventRecorded(Contract):
    """Ingest committed an event: one `dasi:events` entry per event, as ingest published them until
    it wrote `EventsRecorded` (at least once; dedupe by event_id)."""

    kind: ClassVar[str] = "event.recorded"
    version: ClassVar[int] = 1

    workspace_id: uuid.UUID
    event_id: uuid.UUID
    profile_id: uuid.UUID
    type: str  # track, identify, page, screen, alias, group
    name: str | None = None  # the track event's name, e.g. "Order Completed"
    occurred_at: datetime


class RecordedEvent(BaseModel):
    """One event of an `EventsRecorded` entry: an `EventRecorded` without its workspace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    profile_id: uuid.UUID
    type: str
    name: str | None = None
    occurred_at: datetime


@register
class EventsRecorded(Contract):
    """Ingest committed these events of one workspace: what ingest publishes on `dasi:events`, one
    entry for up to a few hundred events (at least once; dedupe by event_id). An entry per event
    cost the publisher and Redis more than the rest of publishing; `EventRecorded` entries are still
    read (what an older ingest wrote). `each()` reads the entry as `EventRecorded` messages."""

    kind: ClassVar[str] = "events.recorded"
    version: ClassVar[int] = 1

    workspace_id: uuid.UUID
    events: list[RecordedEvent] = Field(min_length=1)

    def each(self) -> list[EventRecorded]:
        return [EventRecorded(workspace_id=self.workspace_id, **e.model_dump()) for e in self.events]


def recorded_events(message: Contract) -> list[EventRecorded]:
    """The events a `dasi:events` entry announces, whichever contract wrote it."""
    if isinstance(message, EventsRecorded):
        return message.each()
    if isinstance(message, EventRecorded):
        return [message]
    return []


# --- dispatcher: the `dispatch` queue ------------------------------------------------------------

DISPATCH_QUEUE = "dispatch"

ChannelName = Literal["friendtalk", "brand_message", "alimtalk", "sms", "lms", "mms", "push", "email"]


class InlineContent(BaseModel):
    """A message's text given with the request instead of a stored template (one-off sends).
    Liquid source, rendered with the recipient's traits and `variables` like a template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: str = Field(min_length=1, max_length=4000)
    subject: str | None = Field(default=None, max_length=200)


class SendRequest(BaseModel):
    """One message for one recipient: the scheduler's unit of "send this step to this person".

    `idempotency_key` is unique per workspace: a request repeated with the same key is ignored (the
    first one's message and outcome stand), and the provider sees the key at most once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    idempotency_key: str = Field(min_length=1, max_length=200)
    profile_id: uuid.UUID | None = None
    to: str | None = Field(default=None, max_length=320)  # a direct address (test sends): phone, token, email
    campaign_id: uuid.UUID | None = None
    trigger_id: uuid.UUID | None = None
    step: str | None = Field(default=None, max_length=64)
    channels: list[ChannelName] = Field(min_length=1, max_length=4)  # the chain, first choice first
    template_id: uuid.UUID | None = None
    # a template per channel of the chain where they differ (alimtalk template vs its SMS text)
    templates: dict[ChannelName, uuid.UUID] = Field(default_factory=dict)
    content: InlineContent | None = None  # instead of a template (not for alimtalk)
    variables: dict[str, Any] = Field(default_factory=dict)  # trigger data for the template
    is_ad: bool = False
    night_policy: Literal["defer", "skip"] = "defer"

    @model_validator(mode="after")
    def _recipient(self) -> SendRequest:
        if (self.profile_id is None) == (self.to is None):
            raise ValueError("give exactly one of profile_id and to")
        if self.template_id is None and self.content is None and not self.templates:
            raise ValueError("give a template_id (or templates per channel) or inline content")
        return self


@register
class SendBatch(Contract):
    """A batch of send requests for the dispatcher (arq queue `dispatch`, job `dispatch_batch`).

    One job per ~100 messages: arq manages ~2,200 jobs/s per process, far below the send rate.
    """

    kind: ClassVar[str] = "dispatch.send_batch"
    version: ClassVar[int] = 1

    workspace_id: uuid.UUID
    messages: list[SendRequest] = Field(min_length=1, max_length=1000)
    enqueued_at: datetime | None = None
