"""Stream publishing waits for the commit; consumer groups ack after work and reclaim from the dead."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.contracts import (
    EVENTS_STREAM,
    EventRecorded,
    EventsRecorded,
    RecordedEvent,
    UnknownContract,
    decode,
    recorded_events,
)
from shared.db import session_scope
from shared.publisher import publish, publish_after_commit
from shared.streams import (
    consume_once,
    dead_letter_stream,
    ensure_group,
    read_new,
    reclaim_stale,
    trim_finished,
)

DAY = timedelta(days=1)


def event(name: str = "Product Added") -> EventRecorded:
    return EventRecorded(
        workspace_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        profile_id=uuid.uuid4(),
        type="track",
        name=name,
        occurred_at=datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
    )


def test_contract_round_trip_and_unknown_versions_refused():
    message = event()
    assert decode(message.to_stream_fields()) == message
    assert decode(message.to_job_payload()) == message
    with pytest.raises(UnknownContract):
        decode({"kind": "event.recorded", "v": "99", "body": "{}"})


def test_an_entry_of_several_events_reads_as_one_event_recorded_each():
    one, two = event("Product Viewed"), event("Order Completed")
    batch = EventsRecorded(
        workspace_id=one.workspace_id,
        events=[RecordedEvent(**m.model_dump(exclude={"workspace_id"})) for m in (one, two)],
    )
    decoded = decode(batch.to_stream_fields())
    assert decoded == batch
    two_here = two.model_copy(update={"workspace_id": one.workspace_id})
    assert recorded_events(decoded) == [one, two_here]
    assert recorded_events(one) == [one]  # an entry an older ingest wrote: one event
    with pytest.raises(ValidationError):  # an entry announces something
        EventsRecorded(workspace_id=one.workspace_id, events=[])


async def test_published_only_after_commit_and_never_after_rollback(db, redis):
    async with session_scope(db) as session:
        publish_after_commit(session, redis, EVENTS_STREAM, [event("Order Completed")])
        assert await redis.xlen(EVENTS_STREAM) == 0  # not before the commit
    assert await redis.xlen(EVENTS_STREAM) == 1

    with pytest.raises(RuntimeError):
        async with session_scope(db) as session:
            publish_after_commit(session, redis, EVENTS_STREAM, [event("Order Refunded")])
            raise RuntimeError("the transaction fails")
    assert await redis.xlen(EVENTS_STREAM) == 1


async def test_group_consumer_acks_only_after_the_handler_succeeds(redis):
    await ensure_group(redis, EVENTS_STREAM, "segmenter")
    await ensure_group(redis, EVENTS_STREAM, "segmenter")  # idempotent
    sent = [event(), event()]
    await publish(redis, EVENTS_STREAM, sent)

    async def failing(entries):
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await consume_once(redis, EVENTS_STREAM, "segmenter", "worker-1", failing, block_ms=None)
    assert (await redis.xpending(EVENTS_STREAM, "segmenter"))["pending"] == 2

    seen = []

    async def handler(entries):
        seen.extend(e.message for e in entries)

    # a new consumer takes over what the failed one left, once it has been idle long enough
    await consume_once(
        redis, EVENTS_STREAM, "segmenter", "worker-2", handler, block_ms=None, reclaim_idle_ms=0
    )
    assert seen == sent
    assert (await redis.xpending(EVENTS_STREAM, "segmenter"))["pending"] == 0


async def test_each_group_sees_every_entry(redis):
    for group in ("segmenter", "scheduler", "attribution"):
        await ensure_group(redis, EVENTS_STREAM, group)
    await publish(redis, EVENTS_STREAM, [event()])
    for group in ("segmenter", "scheduler", "attribution"):
        assert len(await read_new(redis, EVENTS_STREAM, group, "c1", block_ms=None)) == 1


async def test_unreadable_entry_goes_to_dead_letters_and_does_not_block(redis):
    await ensure_group(redis, EVENTS_STREAM, "segmenter")
    await redis.xadd(EVENTS_STREAM, {"kind": "event.recorded", "v": "7", "body": "{}"})
    await publish(redis, EVENTS_STREAM, [event()])
    entries = await read_new(redis, EVENTS_STREAM, "segmenter", "c1", block_ms=None)
    assert len(entries) == 1
    assert await redis.xlen(dead_letter_stream(EVENTS_STREAM)) == 1
    assert await reclaim_stale(redis, EVENTS_STREAM, "segmenter", "c2", min_idle_ms=0) == entries


async def _ids(redis) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await redis.xrange(EVENTS_STREAM)]


async def test_trimming_drops_what_every_group_acked_and_keeps_the_rest(redis):
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 0  # no stream yet
    for group in ("segmenter", "attribution"):
        await ensure_group(redis, EVENTS_STREAM, group)
    ids = await publish(redis, EVENTS_STREAM, [event(), event(), event(), event()])

    async def done(entries):
        pass

    await consume_once(redis, EVENTS_STREAM, "segmenter", "c1", done, count=3, block_ms=None)
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 0  # attribution read nothing

    # attribution read two and acked neither: its oldest pending one is where the stream must start
    await read_new(redis, EVENTS_STREAM, "attribution", "c1", count=2, block_ms=None)
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 0
    await redis.xack(EVENTS_STREAM, "attribution", ids[0])
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 1
    assert await _ids(redis) == ids[1:]

    # both acked the first three
    await redis.xack(EVENTS_STREAM, "attribution", ids[1])
    await consume_once(redis, EVENTS_STREAM, "attribution", "c1", done, count=1, block_ms=None)
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 2
    assert await _ids(redis) == ids[3:]


async def test_trimming_drops_entries_older_than_kept_whatever_the_groups_say(redis):
    await publish(redis, EVENTS_STREAM, [event(), event()])  # no group yet: kept for a newcomer
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 0
    await ensure_group(redis, EVENTS_STREAM, "segmenter")  # a group that never reads
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=DAY) == 0
    await asyncio.sleep(0.01)
    later = await publish(redis, EVENTS_STREAM, [event()])
    assert await trim_finished(redis, EVENTS_STREAM, keep_for=timedelta(milliseconds=5)) == 2
    assert await _ids(redis) == later
