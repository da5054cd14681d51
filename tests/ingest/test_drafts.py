"""Drafts (services/ingest/drafts.py): what a message becomes as its request arrives, before any
transaction knows its shopper's profile, and what placing it on a profile gives the transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from services.ingest.drafts import EVENT_FIELDS, drafts_of, placed
from services.ingest.facts import UNRESOLVED
from services.ingest.schemas import GroupMessage, IdentifyMessage, PageMessage, TrackMessage
from shared.contracts import RecordedEvent

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_placed_drafts_json_is_its_event_on_its_profile():
    sent = NOW - timedelta(seconds=3)
    message = TrackMessage.model_validate(
        {
            "type": "track",
            "userId": "member-1",
            "event": "Product Added",
            "messageId": "m-1",
            "timestamp": (sent - timedelta(minutes=1)).isoformat(),
            "sentAt": sent.isoformat(),
            "context": {"page": {"title": "겨울 세일"}},
            "properties": {"product_id": "P1", "name": "수분크림", "price": 28000, "quantity": 2},
        }
    )
    [draft] = drafts_of([message], received_at=NOW, batch_context={"library": {"name": "analytics-python"}})
    profile = uuid.uuid4()
    draft.place(profile)

    rows = placed([draft], 500)
    [event] = orjson.loads(rows.events)

    assert dict(zip(EVENT_FIELDS, event, strict=True)) == {
        "id": draft.event_id,
        "profile_id": str(profile),
        "message_id": "m-1",
        "type": "track",
        "name": "Product Added",
        "properties": {"product_id": "P1", "name": "수분크림", "price": 28000, "quantity": 2},
        "context": {"library": {"name": "analytics-python"}, "page": {"title": "겨울 세일"}},
        # clock skew corrected: a minute before it was sent, by the server's clock
        "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
    }


def test_placing_a_draft_gives_its_fact_and_consents_the_profile_and_a_retry_places_it_again():
    identify = IdentifyMessage.model_validate(
        {"type": "identify", "userId": "member-1", "traits": {"name": "김민지", "sms_consent": "Y"}}
    )
    page = TrackMessage.model_validate({"type": "track", "userId": "member-1", "event": "Signed In"})
    made = drafts_of([identify, page], received_at=NOW)
    assert [c.profile_id for c in made[0].consents] == [UNRESOLVED]
    assert made[1].fact is not None and made[1].fact.profile_id == UNRESOLVED

    for profile in (uuid.uuid4(), uuid.uuid4()):  # a group's failed transaction, then the request alone
        for draft in made:
            draft.place(profile)
        assert [(c.profile_id, c.topic, c.granted) for c in made[0].consents] == [(profile, "sms", True)]
        assert made[1].fact.profile_id == profile
        assert made[1].fact.kind == "login"
        events = orjson.loads(placed(made, 500).events)
        assert {e[EVENT_FIELDS.index("profile_id")] for e in events} == {str(profile)}


def test_placed_drafts_go_to_the_outbox_as_the_stream_tells_them_a_few_to_a_row():
    messages = [
        TrackMessage.model_validate({"type": "track", "userId": "member-1", "event": "Product Viewed"}),
        PageMessage.model_validate({"type": "page", "anonymousId": "visitor-1", "name": "/sale"}),
        GroupMessage.model_validate({"type": "group", "userId": "member-1", "groupId": "vip"}),
    ]
    made = drafts_of(messages, received_at=NOW)
    member, visitor = uuid.uuid4(), uuid.uuid4()
    for draft, profile in zip(made, (member, visitor, member), strict=True):
        draft.place(profile)

    rows = placed(made, 2)

    assert [events for _, events in rows.outbox] == [2, 1]
    assert sorted(rows.profiles) == sorted([member, visitor])
    told = [
        RecordedEvent.model_validate(event) for body, _ in rows.outbox for event in orjson.loads(body)
    ]  # the contract forbids any other field
    assert [(e.profile_id, e.type, e.name, e.occurred_at) for e in told] == [
        (member, "track", "Product Viewed", NOW),
        (visitor, "page", "/sale", NOW),
        (member, "group", None, NOW),  # the stream names only what segments key on
    ]
    assert [str(e.event_id) for e in told] == [d.event_id for d in made]
