"""The worker runs the batches of `dispatch_batch` jobs in flight at the same time through the
pipeline together: one provider call for all of them, each job still answered with its own messages
once they are recorded, workspaces kept apart, and a batch that fails costs only its own job."""

from __future__ import annotations

import asyncio
import uuid

from services.dispatcher.coalescing import BatchCoalescer
from services.dispatcher.repository import message_id_for
from shared.contracts import SendBatch
from tests.dispatcher.pipeline_support import (
    batch,
    dispatcher_for,
    make_shop,
    make_shopper,
    message_of,
    no_retry_waits,  # noqa: F401  (autouse fixture)
    request,
    sandbox,  # noqa: F401  (fixture)
)


async def test_jobs_in_flight_share_one_run_and_each_gets_its_own_messages(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pids = [await make_shopper(db, shop, clock.now(), phone=f"0101234{i:04d}") for i in range(4)]
    sms = shop.templates["sms_info"]
    jobs = [
        batch(
            shop,
            *(request(f"j{j}-{i}", ["sms"], profile_id=pids[2 * j + i], template_id=sms) for i in range(2)),
        )
        for j in range(2)
    ]
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        coalescer = BatchCoalescer(d, wait_s=0.05)
        first, second = await asyncio.gather(*(coalescer.dispatch(job) for job in jobs))
    assert first == [message_id_for(shop.workspace_id, f"j0-{i}") for i in range(2)]
    assert second == [message_id_for(shop.workspace_id, f"j1-{i}") for i in range(2)]
    for mid in first + second:  # recorded when the jobs returned
        assert (await message_of(db, mid)).status == "sent"
    [call] = await sandbox.submissions("sms")  # one provider call for both jobs
    assert call["recipients"] == 4


async def test_a_full_run_starts_without_waiting(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    sms = shop.templates["sms_info"]
    jobs = [batch(shop, request(f"k{i}", ["sms"], profile_id=pid, template_id=sms)) for i in range(2)]
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        coalescer = BatchCoalescer(d, max_messages=2, wait_s=60)
        results = await asyncio.wait_for(asyncio.gather(*(coalescer.dispatch(j) for j in jobs)), 10)
    assert [len(ids) for ids in results] == [1, 1]


async def test_workspaces_stay_apart_in_one_run(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    other = await make_shop(db, clock.now(), name="다른 스토어")
    ours = await make_shopper(db, shop, clock.now())
    theirs = await make_shopper(db, other, clock.now(), phone="01099998888")
    jobs = [
        batch(shop, request("same-key", ["sms"], profile_id=ours, template_id=shop.templates["sms_info"])),
        # names a shopper of the first shop: unknown to this workspace, even in the same run
        batch(other, request("same-key", ["sms"], profile_id=ours, template_id=other.templates["sms_info"])),
        batch(other, request("k2", ["sms"], profile_id=theirs, template_id=other.templates["sms_info"])),
    ]
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        coalescer = BatchCoalescer(d, wait_s=0.05)
        [mine], [borrowed], [their_own] = await asyncio.gather(*(coalescer.dispatch(j) for j in jobs))
    assert mine == message_id_for(shop.workspace_id, "same-key") != borrowed
    assert borrowed == message_id_for(other.workspace_id, "same-key")
    assert (await message_of(db, mine)).status == "sent"
    skipped = await message_of(db, borrowed)
    assert (skipped.workspace_id, skipped.status) == (other.workspace_id, "skipped")
    assert "unknown_profile" in (skipped.reason or "")
    assert (await message_of(db, their_own)).status == "sent"
    assert sorted(m["recipient"] for m in await sandbox.messages("sms")) == ["01012345678", "01099998888"]


async def test_a_failing_batch_fails_only_its_own_job(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    good = batch(shop, request("good", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
    # a workspace that does not exist: recording its messages breaks the merged run's transaction
    bad = SendBatch(workspace_id=uuid.uuid4(), messages=good.messages)
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        coalescer = BatchCoalescer(d, wait_s=0.05)
        ok, failed = await asyncio.gather(
            coalescer.dispatch(good), coalescer.dispatch(bad), return_exceptions=True
        )
        assert ok == [message_id_for(shop.workspace_id, "good")]
        assert isinstance(failed, Exception)  # arq retries that job alone
        assert (await message_of(db, message_id_for(shop.workspace_id, "good"))).status == "sent"
        assert len(await sandbox.messages("sms")) == 1
        await coalescer.close()
