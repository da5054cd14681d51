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
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

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
    """Ingest committed an event. Published on `dasi:events` (at least once; dedupe by event_id)."""

    kind: ClassVar[str] = "event.recorded"
    version: ClassVar[int] = 1

    workspace_id: uuid.UUID
    event_id: uuid.UUID
    profile_id: uuid.UUID
    type: str  # track, identify, page, screen, alias, group
    name: str | None = None  # the track event's name, e.g. "Order Completed"
    occurred_at: datetime
