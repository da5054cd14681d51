"""Claiming a transaction's messageIds request by request (migration 0020): a plain insert for each
request, and only a request that carries a repeat claimed again with ON CONFLICT. Every request still
counts its own repeats, and nothing is stored twice or left out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.ingest import repository, service
from services.ingest.drafts import Draft
from shared.db import driver_transaction
from tests.ingest.conftest import events_of, track_drafts

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # when track_drafts were received


@dataclass(frozen=True)
class _Claim:
    message_id: str
    made_at: float | None = None


async def _record(db, workspace, parts: list[list[Draft]]) -> list[tuple[int, int]]:
    async with driver_transaction(db) as connection:
        recorded = await service.record_drafts(
            connection, workspace.id, parts, timezone=workspace.timezone, received_at=NOW
        )
    return [(r.accepted, r.duplicates) for r in recorded]


async def test_a_resent_request_beside_new_ones_counts_its_repeats_and_the_others_are_stored(db, shop):
    store = shop.workspace
    assert await _record(db, store, [track_drafts("x1", "x2", "x3")]) == [(3, 0)]

    counts = await _record(
        db,
        store,
        [
            track_drafts("a1", "a2"),
            track_drafts("x1", "x2"),  # an SDK's resend: every messageId a repeat
            track_drafts("c1", "x3", user="member-8"),  # one new, one a repeat
            track_drafts("d1", "a1"),  # a1 again, from this same transaction
        ],
    )

    assert counts == [(2, 0), (2, 2), (2, 1), (2, 1)]
    stored = sorted(e.message_id for e in await events_of(db, store.id))
    assert stored == ["a1", "a2", "c1", "d1", "x1", "x2", "x3"]


async def test_many_small_requests_share_parts_and_each_counts_its_own_repeats(db, shop):
    store = shop.workspace
    assert await _record(db, store, [track_drafts("m3", "m17")]) == [(2, 0)]
    requests = [track_drafts(f"m{i}") for i in range(80)]  # 80 single-message requests (/v1/track)

    counts = await _record(db, store, requests)

    assert counts == [(1, 1) if i in (3, 17) else (1, 0) for i in range(80)]
    assert len(await events_of(db, store.id)) == 80


def test_parts_hold_whole_requests_in_order_and_never_exceed_the_limit():
    one_each = [[_Claim(f"r{i}")] * 3 for i in range(repository.MAX_CLAIM_PARTS)]
    assert repository.claim_parts(one_each) == one_each

    sizes = [1, 250, 1, 1, 40, *([1] * 200), 300, 2]
    requests = [[_Claim(f"r{i}-{j}") for j in range(size)] for i, size in enumerate(sizes)]
    parts = repository.claim_parts(requests)

    assert len(parts) <= repository.MAX_CLAIM_PARTS
    assert [c for part in parts for c in part] == [c for r in requests for c in r]
    starts = {r[0] for r in requests}
    for part in parts:  # a part starts where a request starts, so it ends where one ends
        assert part[0] in starts
    assert repository.claim_parts([[], [_Claim("a")], []]) == [[_Claim("a")]]
