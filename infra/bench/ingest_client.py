"""The client's whole CPU path of a tracked event, without Postgres or HTTP.

    .venv/bin/python -m infra.bench.ingest_client [--batches 200] [--rounds 5]

The same batches as `infra.bench.ingest`, 5 requests to a transaction: each is parsed and made drafts
(as a request arrives), then `service.record_drafts` runs on a connection that answers nothing
(every message new, no shopper known) and ignores what it is sent. Prints the best of `--rounds`, in
us of thread CPU an event, for each part. Against `ingest_python` (each step alone, over data it has
seen before), this runs the steps in their order over fresh data, as the app does.

This machine's speed swings by tens of percent from minute to minute: to compare two versions, run
this from each checkout's root alternately, a few times each (`-m` imports the checkout it runs in).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from infra.bench.ingest import BATCH, RESEND_BACK, make_batches
from services.ingest import payload, service
from services.ingest.drafts import drafts_of
from shared.runtime import tune_gc

PER_TRANSACTION = 5


class Unanswering:
    """An asyncpg connection for `record_drafts` that finds nothing and stores nowhere."""

    async def fetch(self, *args: Any) -> list[Any]:
        return []

    async def execute(self, *args: Any) -> None:
        return None


async def _round(bodies: list[bytes]) -> tuple[int, int, int]:
    """Thread CPU (ns) of parsing, drafting and the transaction's Python, over all `bodies`."""
    now = datetime.now(UTC)
    workspace_id = uuid.uuid4()
    connection: Any = Unanswering()
    parsing = drafting = recording = 0
    for start in range(0, len(bodies), PER_TRANSACTION):
        parts = []
        for body in bodies[start : start + PER_TRANSACTION]:
            began = time.thread_time_ns()
            parsed = payload.parse_batch(orjson.loads(body))
            parsed_at = time.thread_time_ns()
            parts.append(
                drafts_of(
                    parsed.messages,
                    received_at=now,
                    batch_sent_at=parsed.sent_at,
                    batch_context=parsed.context,
                )
            )
            parsing += parsed_at - began
            drafting += time.thread_time_ns() - parsed_at
        began = time.thread_time_ns()
        await service.record_drafts(connection, workspace_id, parts, timezone="Asia/Seoul", received_at=now)
        recording += time.thread_time_ns() - began
    return parsing, drafting, recording


async def measure(batches: int, rounds: int) -> None:
    tune_gc()  # as every service process does
    # past the first batches, which no resend can repeat
    bodies = make_batches(batches + RESEND_BACK[0])[RESEND_BACK[0] :]
    best = [float("inf")] * 3
    for _ in range(rounds):
        best = [min(b, spent) for b, spent in zip(best, await _round(bodies), strict=True)]
    events = batches * BATCH
    parts = zip(("as it arrives: parse", "as it arrives: drafts", "in the transaction"), best, strict=True)
    for name, ns in parts:
        print(f"{name:30} {ns / events / 1000:6.2f}")
    print(f"{'total':30} {sum(best) / events / 1000:6.2f}   (us an event, best of {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(measure(args.batches, args.rounds))


if __name__ == "__main__":
    main()
