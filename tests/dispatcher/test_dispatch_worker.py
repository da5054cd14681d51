"""The dispatcher's jobs in a real arq worker (burst mode), and called directly."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from services.dispatcher.coalescing import BatchCoalescer
from services.dispatcher.jobs import enqueue_batch
from services.dispatcher.message_models import Message
from services.dispatcher.repository import message_id_for
from services.dispatcher.worker import dispatch_batch, send_due
from shared.db import session_scope
from tests.dispatcher.pipeline_support import (
    batch,
    dispatcher_for,
    dispatcher_http,
    eventually,
    make_shop,
    make_shopper,
    message_of,
    no_retry_waits,  # noqa: F401  (autouse fixture)
    request,
    run_worker,
    sandbox,  # noqa: F401  (fixture)
    status_is,
)


async def test_batches_on_the_dispatch_queue_are_sent_by_the_worker(settings, db, redis, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pids = [await make_shopper(db, shop, clock.now(), phone=f"0101234{i:04d}") for i in range(5)]
    jobs = [
        batch(
            shop,
            *(
                request(
                    f"cart-{n}-{i}",
                    ["friendtalk", "sms"],
                    profile_id=pid,
                    templates={
                        "friendtalk": shop.templates["friendtalk_ad"],
                        "sms": shop.templates["sms_ad"],
                    },
                )
                for i, pid in enumerate(pids)
            ),
        )
        for n in range(3)
    ]
    await sandbox.script("01012340003", "not_friend")
    for job in jobs:
        await enqueue_batch(redis, job)
    await enqueue_batch(redis, jobs[0])  # an enqueue repeated is the same job
    async with dispatcher_http(settings, clock, sandbox):
        await run_worker(settings, clock, sandbox, provider_fallback=False)
        unreachable = [message_id_for(shop.workspace_id, f"cart-{n}-3") for n in range(3)]
        for mid in unreachable:
            await eventually(lambda mid=mid: status_is(db, mid, "queued"))
        await run_worker(settings, clock, sandbox, provider_fallback=False)  # the report-driven fallbacks
        for mid in unreachable:
            await eventually(lambda mid=mid: status_is(db, mid, "delivered_via_fallback"))
    async with session_scope(db) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 15
    assert len(await sandbox.messages("kakao")) == 15
    assert len(await sandbox.messages("sms")) == 3


async def test_dispatch_batch_called_directly(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    job = batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        ctx = {"dispatcher": d, "coalescer": BatchCoalescer(d)}
        assert await dispatch_batch(ctx, job.to_job_payload()) == 1
        assert await dispatch_batch(ctx, job.to_job_payload()) == 1  # a retried job sends nothing new
    assert (await message_of(db, message_id_for(shop.workspace_id, "k1"))).status == "sent"
    assert len(await sandbox.submissions("sms")) == 1


async def test_send_due_cron_sends_deferred_messages_in_the_morning(settings, db, redis, clock, sandbox):  # noqa: F811
    clock.set(datetime(2026, 11, 23, 13, 0, tzinfo=UTC))  # 22:00 in Seoul
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await enqueue_batch(
        redis, batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_ad"]))
    )
    await run_worker(settings, clock, sandbox)
    mid = message_id_for(shop.workspace_id, "k1")
    assert (await message_of(db, mid)).status == "deferred"
    clock.set(datetime(2026, 11, 23, 23, 0, tzinfo=UTC))  # 08:00
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        assert await send_due({"dispatcher": d}) == 1
    assert (await message_of(db, mid)).status == "sent"
