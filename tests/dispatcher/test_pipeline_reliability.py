"""Exactly-once hand-over and provider trouble: a worker dying between submit and record (exactly
one submission at the sandbox), a worker dying before submitting, provider outage with the circuit
breaker moving the chain on, transient errors retried with backoff then given up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.dispatcher import repository as repo
from services.dispatcher.resilience import ProviderGuards
from services.dispatcher.wiring import DispatchSettings
from services.dispatcher.worker import sweep
from shared.settings import PROJECT_ROOT
from tests.dispatcher.pipeline_support import (
    attempts_of,
    batch,
    dispatcher_for,
    make_shop,
    make_shopper,
    message_of,
    no_retry_waits,  # noqa: F401  (autouse fixture)
    request,
    sandbox,  # noqa: F401  (fixture)
)


class WorkerDied(Exception):
    """Stands in for kill -9: nothing after this point runs."""


async def _die(*_args: object) -> None:
    raise WorkerDied


async def test_worker_killed_between_submit_and_record_submits_once(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    job = batch(
        shop, request("order-77-shipped", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"])
    )
    async with dispatcher_for(settings, db, clock, sandbox) as first:
        first.after_submit = _die
        with pytest.raises(WorkerDied):
            await first.dispatch(job)
    [attempt] = await attempts_of(db, (await first_message(db, job, shop)))
    assert attempt.state == "submitting"  # the provider has it, our record does not
    assert len(await sandbox.submissions("sms")) == 1

    # the job runs again in a new worker once the attempt's lease has run out
    clock.advance(timedelta(minutes=2))
    async with dispatcher_for(settings, db, clock, sandbox) as second:
        [mid] = await second.dispatch(job)
    message = await message_of(db, mid)
    assert (message.status, message.channel) == ("delivered", "sms")  # the provider's word, by lookup
    [attempt] = await attempts_of(db, mid)
    assert attempt.state == "done" and attempt.provider_ref  # found by lookup, not sent again
    assert len(await sandbox.submissions("sms")) == 1
    assert len(await sandbox.messages("sms", grouping_key=attempt.provider_key)) == 1


async def test_worker_killed_before_submitting_submits_on_restart(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    job = batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
    async with dispatcher_for(settings, db, clock, sandbox) as first:
        first.before_submit = _die
        with pytest.raises(WorkerDied):
            await first.dispatch(job)
    assert await sandbox.submissions() == []
    clock.advance(timedelta(minutes=2))
    async with dispatcher_for(settings, db, clock, sandbox) as second:
        swept = await sweep({"dispatcher": second, "dispatch_settings": DispatchSettings()})  # the cron
        assert swept["recovered"] == 1
    mid = await first_message(db, job, shop)
    assert (await message_of(db, mid)).status in ("sent", "delivered")
    assert len(await sandbox.submissions("sms")) == 1


async def test_provider_outage_opens_the_breaker_and_the_chain_moves_on(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.provider("kakao", outage=True)
    chain = {"friendtalk": shop.templates["friendtalk_ad"], "sms": shop.templates["sms_ad"]}
    ids = []
    async with dispatcher_for(settings, db, clock, sandbox, breaker_threshold=2) as d:
        for i in range(4):
            [mid] = await d.dispatch(
                batch(shop, request(f"k{i}", ["friendtalk", "sms"], profile_id=pid, templates=chain))
            )
            ids.append(mid)
        assert d.guards.breaker("nhn-kakao").state == "open"
        first, second, third, fourth = [await message_of(db, m) for m in ids]
        # the calls that failed: retried later (backoff), the breaker counted them
        for m in (first, second):
            assert (m.status, m.tries, m.chain_pos) == ("queued", 1, 0)
            assert m.not_before is not None and m.not_before > clock.now()
            [attempt] = await attempts_of(db, m.id)
            assert (attempt.outcome, attempt.code) == ("transient", "unavailable")
        # once open: no call to the provider, the next channel at once
        for m in (third, fourth):
            assert (m.status, m.channel) == ("sent", "sms")
            kakao, sms = await attempts_of(db, m.id)
            assert kakao.code == "circuit_open" and sms.channel == "sms"
        assert len(await sandbox.submissions("kakao")) == 2
        assert len(await sandbox.submissions("sms")) == 2

        # the provider recovers; after the cool-down one probe call closes the breaker
        await sandbox.provider("kakao", outage=False)
        clock.advance(timedelta(minutes=10))
        assert await d.send_due() == 2
        assert d.guards.breaker("nhn-kakao").state == "closed"
    for mid in ids[:2]:
        assert (await message_of(db, mid)).channel == "friendtalk"


async def test_transient_errors_retry_with_backoff_then_fail(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.provider("sms", error_rate=1.0)
    async with dispatcher_for(settings, db, clock, sandbox, breaker_threshold=100) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )
        waits = []
        for _ in range(5):
            message = await message_of(db, mid)
            if message.status != "queued":
                break
            assert message.not_before is not None
            waits.append(message.not_before - clock.now())
            clock.set(message.not_before)
            await d.send_due()
    message = await message_of(db, mid)
    assert message.status == "failed" and "3 tries" in (message.reason or "")
    assert len(waits) == 2 and waits[1] > waits[0] * 1.0  # backoff grows (with jitter)
    assert len(await attempts_of(db, mid)) == 3
    assert message.cost_krw == 0


async def first_message(db, job, shop):
    from services.dispatcher.repository import message_id_for

    return message_id_for(shop.workspace_id, job.messages[0].idempotency_key)


async def test_worker_process_killed_9_between_submit_and_record(settings, db, clock, sandbox):  # noqa: F811
    """The same with a real process death: SIGKILL after the provider's answer, before the record."""
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    job = batch(
        shop, request("order-88-shipped", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"])
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.dispatcher.crash_worker",
        sandbox.url,
        sandbox.appkey,
        orjson.dumps(job.to_job_payload()).decode(),
        cwd=PROJECT_ROOT,
        env={**os.environ, "DASI_LOG_LEVEL": "WARNING"},
    )
    assert await process.wait() == -signal.SIGKILL
    mid = await first_message(db, job, shop)
    assert (await message_of(db, mid)).status == "sending"
    [attempt] = await attempts_of(db, mid)
    assert attempt.state == "submitting"
    assert len(await sandbox.submissions("sms")) == 1

    clock.set(datetime.now(UTC) + timedelta(minutes=2))  # the dead process used the real clock
    async with dispatcher_for(settings, db, clock, sandbox) as restarted:
        await restarted.dispatch(job)  # arq runs the job again
    assert (await message_of(db, mid)).status in ("sent", "delivered")
    assert len(await sandbox.submissions("sms")) == 1
    assert len(await sandbox.messages("sms")) == 1


async def test_rate_limit_per_provider_spaces_the_calls(clock):
    guards = ProviderGuards(clock, rates={"nhn-sms": 100.0})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await guards.acquire("nhn-sms", 30)  # a tenth of a second's worth fits the bucket; the rest waits
    assert loop.time() - started >= 0.15
    started = loop.time()
    await guards.acquire("fcm", 10_000)  # no limit set for it
    assert loop.time() - started < 0.1


async def test_statements_on_the_driver_connection_are_inside_the_session_transaction(db):
    """The claim, the attempts and the advisory locks go straight to asyncpg: they must run in the
    session's transaction (SQLAlchemy begins lazily), or a lock would be released at once and a
    claim committed even when the step then fails."""
    async with db() as session:
        conn = await repo.driver_connection(session)
        assert conn.is_in_transaction()
        await repo.lock_refs(session, "nhn-sms", ["sms:1/1", "sms:1/2"])
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert held == 2  # still held: they go with the transaction
        await session.rollback()
