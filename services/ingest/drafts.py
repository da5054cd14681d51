"""A request's valid messages made ready to store, as it arrives: everything of a message that does
not depend on which profile it lands on. The transaction that stores it (service.record_drafts) then
does only what needs the database's answer: the repeats left out, the shoppers resolved, the
aggregates reduced.

Why before: a workspace's transactions run one after the other in each process (group_commit.py),
and requests gather behind the running one, so its wall time an event sets every request's wait
(BENCHMARKS.md, session 17: T = F / (1 - lambda c)). Work done as a request arrives overlaps the running
transaction's round trips; work done inside it lengthens it. The transaction's Python went from
8.2 to 3.7 us an event with this (`infra.bench.ingest_python`, BENCHMARKS.md session 20).

Each draft's profile is filled in by the transaction that resolves its shopper (`Draft.place`):
a request is in one transaction at a time, and one stored again on its own after its group failed
is placed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from uuid_utils import uuid7

from services.ingest import consents, messages
from services.ingest.consents import Consent
from services.ingest.facts import UNRESOLVED, Fact, fact_of
from services.ingest.identity import ANONYMOUS_ID, USER_ID, Ids, Key
from services.ingest.schemas import (
    AliasMessage,
    GroupMessage,
    IdentifyMessage,
    PageMessage,
    ScreenMessage,
    TrackMessage,
)

# A message as the contract validated it (schemas.py), or as the batch's fast path did
# (messages.py): the same attributes. Read by its `type`, never by its class.
ContractMessage = TrackMessage | IdentifyMessage | PageMessage | ScreenMessage | GroupMessage | AliasMessage
Message = ContractMessage | messages.FastMessage


# the names segments and journeys key on, as the contract says; the stream leaves the others out
_STREAM_NAMED = frozenset({"track", "page", "screen"})

# An event as `ingest.store_batch` reads it: a JSON array of these, by position (migration 0021).
# Postgres parses no keys and builds no object: ~1 us an event of its time less than an object.
EVENT_FIELDS = ("profile_id", "id", "message_id", "type", "name", "properties", "context", "occurred_at")


@dataclass
class Draft:
    """A valid message made ready to store: its event is in its JSON, and in its fact and consents."""

    event_id: str  # a time-ordered uuid (version 7), as text: what the statements and the JSON take
    message_id: str
    made_at: float | None  # when it was made by the server's clock (Unix time), where known (dedupe.py)
    ids: Ids  # the shopper ids it names (identity resolution reads them)
    keys: list[Key]  # the same, as the identities' keys (the transaction locks and looks them up)
    # The event as `ingest.store_batch` reads it (`EVENT_FIELDS`) and as the events stream tells it
    # (shared/contracts.py, `RecordedEvent`), each but for its profile, without its opening `[` or `{`
    # (`placed` puts the profile in front)
    json_tail: bytes
    stream_tail: bytes
    fact: Fact | None  # what it adds to its profile's aggregates, if anything (facts.py)
    consents: list[Consent]  # the consents it gives (identify only)
    profile_id: uuid.UUID = UNRESOLVED  # set by `place`

    def place(self, profile_id: uuid.UUID) -> None:
        """Give the draft the profile its transaction resolved it to."""
        self.profile_id = profile_id
        if self.fact is not None:
            self.fact.profile_id = profile_id
        if self.consents:
            self.consents = [replace(c, profile_id=profile_id) for c in self.consents]


@dataclass(frozen=True)
class Placed:
    """A transaction's placed drafts as `ingest.store_batch` takes them."""

    events: bytes  # their events, one JSON array
    outbox: list[tuple[bytes, int]]  # the same as the stream tells them: JSON arrays, how many each
    profiles: list[uuid.UUID]  # their profiles, each once


def placed(drafts: Sequence[Draft], per_outbox_row: int) -> Placed:
    """The placed drafts' events as JSON, and as the stream tells them (the `events` of an
    `EventsRecorded` entry) in arrays of at most `per_outbox_row` events."""
    heads: dict[uuid.UUID, tuple[bytes, bytes]] = {}  # a profile's openings, made once per profile
    events, stream = [], []
    for draft in drafts:
        head = heads.get(draft.profile_id)
        if head is None:
            profile = str(draft.profile_id).encode()
            head = heads[draft.profile_id] = (b'["%s",' % profile, b'{"profile_id":"%s",' % profile)
        events.append(head[0] + draft.json_tail)
        stream.append(head[1] + draft.stream_tail)
    chunks = [stream[i : i + per_outbox_row] for i in range(0, len(stream), per_outbox_row)]
    outbox = [(b"[" + b",".join(chunk) + b"]", len(chunk)) for chunk in chunks]
    return Placed(b"[" + b",".join(events) + b"]", outbox, list(heads))


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Clock:
    """When a request arrived, and its batch's clock skew (receivedAt - sentAt, worked out once)."""

    received_at: datetime
    batch_skew: timedelta | None

    @classmethod
    def of(cls, received_at: datetime, batch_sent_at: datetime | None) -> _Clock:
        skew = received_at - _aware(batch_sent_at) if batch_sent_at is not None else None
        return cls(received_at.astimezone(UTC), skew)

    def occurred_at(self, message: Message) -> datetime:
        """Segment's clock-skew correction: timestamp + (receivedAt - sentAt), both sent by the same
        (possibly wrong) device clock. Without a timestamp the event happened when it arrived."""
        if message.timestamp is None:
            return self.received_at
        timestamp = _aware(message.timestamp)
        if message.sent_at is not None:
            timestamp += self.received_at - _aware(message.sent_at)
        elif self.batch_skew is not None:
            timestamp += self.batch_skew
        # in UTC: two datetimes with one tzinfo object compare and subtract without asking it for
        # their offsets (pydantic's parsed zones are each their own object, and a Python call)
        return timestamp.astimezone(UTC)

    def made_at(self, message: Message, occurred_at: datetime) -> float | None:
        """When the message was made, by the server's clock: its corrected time, if it was corrected
        (both `timestamp` and `sentAt` given) and not later than its arrival (services/ingest/dedupe.py).
        As Unix time: asyncpg sends a float ~0.5 us faster than a datetime."""
        if message.timestamp is None or (message.sent_at is None and self.batch_skew is None):
            return None
        return occurred_at.timestamp() if occurred_at <= self.received_at else None


def _identify_traits(message: IdentifyMessage | messages.Identify) -> dict[str, Any]:
    """Segment SDKs send `traits`; RudderStack's Python SDK sends them only as `context.traits`."""
    if message.traits:
        return message.traits
    in_context = message.context.get("traits")
    return in_context if isinstance(in_context, dict) else {}


def _ids(message: Message) -> Ids:
    if message.type == "alias":
        return Ids(message.user_id, message.anonymous_id, previous_id=message.previous_id)
    traits = _identify_traits(message) if message.type == "identify" else None
    return Ids(message.user_id, message.anonymous_id, traits=traits)


def _keys(ids: Ids) -> list[Key]:
    keys: list[Key] = []
    if ids.user_id:
        keys.append((USER_ID, ids.user_id))
    if ids.anonymous_id:
        keys.append((ANONYMOUS_ID, ids.anonymous_id))
    if ids.previous_id:
        keys += [(USER_ID, ids.previous_id), (ANONYMOUS_ID, ids.previous_id)]
    return keys


def _name_and_properties(message: Message) -> tuple[str | None, dict[str, Any]]:
    if message.type == "track":
        return message.event, message.properties
    if message.type == "page" or message.type == "screen":
        if not message.category:
            return message.name, message.properties
        return message.name, {"category": message.category, **message.properties}
    if message.type == "identify":
        return None, _identify_traits(message)
    if message.type == "group":
        return message.group_id, message.traits
    return None, {"previousId": message.previous_id}


def _json_tail(
    event_id: str,
    message_id: str,
    kind: str,
    name: str | None,
    properties: dict[str, Any],
    context: dict[str, Any],
    occurred_at: datetime,
) -> bytes:
    # `EVENT_FIELDS` after the profile; `default=str` writes the Decimals a validated message may hold
    json = orjson.dumps([event_id, message_id, kind, name, properties, context, occurred_at], default=str)
    return json[1:]


def _stream_tail(event_id: str, kind: str, name: str | None, occurred_at: datetime) -> bytes:
    stream_name = name if kind in _STREAM_NAMED else None
    json = orjson.dumps({"event_id": event_id, "type": kind, "name": stream_name, "occurred_at": occurred_at})
    return json[1:]


def _draft(message: Message, clock: _Clock, batch_context: dict[str, Any]) -> Draft:
    occurred_at = clock.occurred_at(message)
    # time-ordered: the events' primary key index takes each at its end, where random ids
    # landed anywhere in it (~1.5 us an event of Postgres's time at 240,000 events, more as it grows)
    event_id = str(uuid7())  # uuid_utils' own type: ~0.3 us an id, a stdlib UUID ~1.2
    message_id = message.message_id or str(uuid.uuid4())
    context = {**batch_context, **message.context} if batch_context else message.context
    name, properties = _name_and_properties(message)
    ids = _ids(message)
    kind = message.type
    given = consents.consents_of(UNRESOLVED, kind, properties, occurred_at)
    # positional: keywords cost ~0.05 us a draft each
    return Draft(
        event_id,
        message_id,
        clock.made_at(message, occurred_at),
        ids,
        _keys(ids),
        _json_tail(event_id, message_id, kind, name, properties, context, occurred_at),
        _stream_tail(event_id, kind, name, occurred_at),
        fact_of(UNRESOLVED, kind, name, properties, occurred_at),
        given,
    )


def drafts_of(
    messages: Sequence[Message],
    *,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
) -> list[Draft]:
    """One request's valid messages made ready to store (its clock skew, its batch context)."""
    clock = _Clock.of(received_at, batch_sent_at)
    return [_draft(m, clock, batch_context or {}) for m in messages]
