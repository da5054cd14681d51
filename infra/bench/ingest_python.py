"""The Python of an ingest transaction, step by step, without a database or HTTP.

    .venv/bin/python -m infra.bench.ingest_python [--transactions 20] [--per-transaction 3]
                                                  [--known 0.7]

The same batches as `infra.bench.ingest` (100 events each), `--per-transaction` requests to a
transaction as group commit gathers them. Each step that is pure Python runs alone over every
transaction, again and again; the best of the repeats is printed, in us an event: first what each
request does as it arrives (services/ingest/drafts.py), then the steps of services/ingest/service.py's
`record_drafts`, inside the transaction. `--known`: the share of the batches' shoppers already known (their
profile ids come from asyncpg, as the claim's lookup gives them); the others get new profiles.

Against `infra.bench.ingest_steps`, which times the same steps inside real transactions, this
leaves out the statements and what Postgres does, and with them most of the machine's noise: run to
run, these figures move by a few percent where the steps' move by 10-30%. Use it to compare two
versions of the Python itself.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID

from infra.bench.ingest import BATCH, RESEND_BACK, make_batches
from services.ingest import aggregates, deltas, payload, repository, service
from services.ingest.drafts import Draft, drafts_of, placed
from services.ingest.facts import Fact
from services.ingest.identity import Plan

REPEATS = 15
TIMEZONE = "Asia/Seoul"


@dataclass
class Transaction:
    """One transaction's inputs, each step's made from the previous step's output."""

    bodies: list[bytes]
    parsed: list[payload.ParsedBatch]
    drafts: list[Draft]  # the transaction's, each messageId once, placed on their profiles
    known: list[repository.KnownIdentity]
    plan: Plan
    facts: list[Fact]
    last_seen: dict[uuid.UUID, datetime]
    reduced: deltas.BatchDeltas


def _parse(body: bytes) -> payload.ParsedBatch:
    return payload.parse_batch(orjson.loads(body))


def _drafts(parsed: Sequence[payload.ParsedBatch], received_at: datetime) -> list[Draft]:
    return [
        draft
        for p in parsed
        for draft in drafts_of(
            p.messages, received_at=received_at, batch_sent_at=p.sent_at, batch_context=p.context
        )
    ]


def _known(drafts: Sequence[Draft], share: float, rng: random.Random) -> list[repository.KnownIdentity]:
    keys = sorted({key for d in drafts for key in d.keys})
    return [
        repository.KnownIdentity(kind, value, AsyncpgUUID(str(uuid.uuid4())), None)
        for kind, value in keys
        if rng.random() < share
    ]


def _place(drafts: Sequence[Draft], plan: Plan) -> None:
    for draft, profile in zip(drafts, plan.profile_of_message, strict=True):
        draft.place(profile)


def _delta_rows(reduced: deltas.BatchDeltas) -> list[str]:
    families = (reduced.profiles, reduced.views, reduced.coupons, reduced.emptied, reduced.cart)
    return [repository.json_text(rows) for rows in families if rows]


def prepare(bodies: list[bytes], share_known: float, received_at: datetime) -> Transaction:
    rng = random.Random(len(bodies))
    parsed = [_parse(body) for body in bodies]
    [drafts] = service._unique([_drafts(parsed, received_at)])
    known = _known(drafts, share_known, rng)
    plan = service._resolve_profiles(drafts, known)
    _place(drafts, plan)
    facts = aggregates._in_time_order(d.fact for d in drafts if d.fact is not None)
    an_hour_ago = received_at - timedelta(hours=1)
    last_seen = {p: an_hour_ago for p in deltas.activity_profiles(facts) if rng.random() < share_known}
    reduced = deltas.reduce(facts, last_seen, TIMEZONE)
    return Transaction(bodies, parsed, drafts, known, plan, facts, last_seen, reduced)


ARRIVAL = "as it arrives: "


def steps(received_at: datetime) -> list[tuple[str, Callable[[Transaction], Any]]]:
    return [
        (ARRIVAL + "parse and validate", lambda tx: [_parse(body) for body in tx.bodies]),
        (ARRIVAL + "drafts", lambda tx: _drafts(tx.parsed, received_at)),
        (
            "repeats and keys",
            lambda tx: sorted({key for part in service._unique([tx.drafts]) for d in part for key in d.keys}),
        ),
        ("identities resolved", lambda tx: service._resolve_profiles(tx.drafts, tx.known)),
        ("drafts placed", lambda tx: _place(tx.drafts, tx.plan)),
        ("events' JSON, and for the outbox", lambda tx: placed(tx.drafts, repository.EVENTS_PER_ENTRY)),
        (
            "facts and consents, in time order",
            lambda tx: (
                aggregates._in_time_order(d.fact for d in tx.drafts if d.fact is not None),
                [c for d in tx.drafts for c in d.consents],
            ),
        ),
        ("aggregates: reduced per profile", lambda tx: deltas.reduce(tx.facts, tx.last_seen, TIMEZONE)),
        ("aggregates: rows' JSON (orjson)", lambda tx: _delta_rows(tx.reduced)),
    ]


def _best_ns(step: Callable[[Transaction], Any], transactions: Sequence[Transaction]) -> int:
    best = None
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        for tx in transactions:
            step(tx)
        spent = time.perf_counter_ns() - started
        best = spent if best is None else min(best, spent)
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=20)
    parser.add_argument("--per-transaction", type=int, default=3)
    parser.add_argument("--known", type=float, default=0.7)
    args = parser.parse_args()

    received_at = datetime.now(UTC)
    # past the first batches, which no resend can repeat
    batches = make_batches(args.transactions * args.per_transaction + RESEND_BACK[0])[RESEND_BACK[0] :]
    transactions = [
        prepare(batches[i : i + args.per_transaction], args.known, received_at)
        for i in range(0, len(batches), args.per_transaction)
    ]
    events = sum(len(tx.drafts) for tx in transactions)
    print(
        f"{len(transactions)} transactions of {args.per_transaction} requests ({BATCH} events each), "
        f"{events:,} events after repeats; best of {REPEATS}, us an event"
    )
    arrival = transaction = 0.0
    for name, step in steps(received_at):
        per_event = _best_ns(step, transactions) / events / 1000
        if name.startswith(ARRIVAL):
            arrival += per_event
        else:
            transaction += per_event
        print(f"{name:40} {per_event:6.2f}")
    print(f"{'total as requests arrive':40} {arrival:6.2f}")
    print(f"{'total in the transaction':40} {transaction:6.2f}")


if __name__ == "__main__":
    main()
