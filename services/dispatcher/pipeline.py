"""The send pipeline: from queued messages to one recorded outcome each (invariant 2).

A step over a batch of messages:

1. claim the due ones (`queued`/`deferred` -> `sending`, row-locked);
2. compose each on its current channel (recipient, rendering, ad form, policy: send / defer / skip);
   a Kakao message followed by SMS/LMS in its chain asks the provider to run that fallback itself;
3. write one attempt per message to send as `submitting`, with the key the provider will be given,
   and COMMIT before any provider call;
4. submit per provider (rate limit, circuit breaker, stamina retries of a failed call);
5. record the answers (`transitions.decide`), apply any report that came before its submission was
   recorded, and run the messages that fall back at once through steps 1-5 again.

A crash between 3 and 5 leaves attempts `submitting`; `recover` asks the provider (`lookup`) for each
before it would submit it again with the same key, so a provider sees a key once.

A policy "skip" names a reason of one channel (not a friend, no consent for it, no address,
unapproved template): the message moves on to the next channel of its chain, and is skipped, with
every channel's reason, only at the end. A "defer" (night, Kakao hours) holds the whole message.
Reports and the recording of submissions serialize per provider ref (advisory locks), so a report
that races its submission's record is applied by whichever commits second.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import stamina
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher import repository as repo
from services.dispatcher.compose import ComposeItem, Composer
from services.dispatcher.message_models import DeliveryAttempt, DeliveryReport, Message
from services.dispatcher.providers.base import (
    Channel,
    Outcome,
    Outgoing,
    ProviderAdapter,
    ProviderUnavailable,
    ResendStatus,
    Submission,
)
from services.dispatcher.providers.base import (
    DeliveryReport as ProviderReport,
)
from services.dispatcher.repository import MessageRow
from services.dispatcher.resilience import ProviderGuards
from services.dispatcher.transitions import Decision, MessageState, decide
from shared.clock import Clock
from shared.contracts import SendBatch
from shared.db import session_scope

log = structlog.get_logger(__name__)

KAKAO = frozenset({Channel.friendtalk, Channel.brand_message, Channel.alimtalk})
PROVIDER_FALLBACK_TO = frozenset({Channel.sms, Channel.lms})
CIRCUIT_OPEN = "circuit_open"
UNAVAILABLE = "unavailable"
NO_PROVIDER = "no_provider"

AfterSubmit = Callable[[str, Sequence[Submission]], Awaitable[None]]


AnyMessage = MessageRow | Message


@dataclass
class _Planned:
    message: MessageRow
    attempt: dict[str, Any]
    outgoing: Outgoing
    adapter: ProviderAdapter


@dataclass
class Dispatcher:
    sessionmaker: async_sessionmaker[AsyncSession]
    adapters: Mapping[Channel, ProviderAdapter]
    composer: Composer
    clock: Clock
    guards: ProviderGuards
    provider_fallback: bool = True  # let Kakao providers run the SMS fallback themselves
    call_attempts: int = 3  # stamina tries of one provider call (connection error, 5xx)
    call_timeout_s: float = 10.0
    lookup_concurrency: int = 16
    lease: timedelta = timedelta(seconds=60)  # an attempt `submitting` longer than this was abandoned
    # tests: simulate a worker dying after the attempts were committed / after the provider answered
    before_submit: Callable[[], Awaitable[None]] | None = None
    after_submit: AfterSubmit | None = None
    _by_name: dict[str, ProviderAdapter] = field(default_factory=dict)
    _tz: dict[uuid.UUID, tuple[datetime, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {a.name: a for a in self.adapters.values()}

    def adapter_named(self, name: str) -> ProviderAdapter | None:
        return self._by_name.get(name)

    # --- entry points -----------------------------------------------------------------------------

    async def dispatch(self, batch: SendBatch) -> list[uuid.UUID]:
        """The `dispatch` job: record the batch, then send it."""
        [ids] = await self.dispatch_many([batch])
        return ids

    async def dispatch_many(self, batches: Sequence[SendBatch]) -> list[list[uuid.UUID]]:
        """`dispatch` for several batches at once: recorded in one transaction (one statement per
        workspace), then sent in one run. Returns each batch's message ids."""
        by_workspace: dict[uuid.UUID, list[int]] = defaultdict(list)
        for i, b in enumerate(batches):
            by_workspace[b.workspace_id].append(i)
        ids: list[list[uuid.UUID]] = [[] for _ in batches]
        new: set[uuid.UUID] = set()
        async with session_scope(self.sessionmaker) as session:
            for workspace_id, indexes in by_workspace.items():
                requests = [r for i in indexes for r in batches[i].messages]
                enqueued = [batches[i].enqueued_at for i in indexes for _ in batches[i].messages]
                got, fresh = await repo.insert_requests(
                    session, workspace_id, requests, enqueued, self.clock.now()
                )
                new |= fresh
                start = 0
                for i in indexes:
                    ids[i] = got[start : start + len(batches[i].messages)]
                    start += len(batches[i].messages)
        every = [m for batch_ids in ids for m in batch_ids]
        # a new message has no attempt that could be half done: only a repeated one is checked
        repeated = [m for m in every if m not in new]
        if repeated:
            await self.recover(message_ids=repeated, older_than=self.lease)
        await self.run(every, recover=False)
        return ids

    async def run(self, ids: Sequence[uuid.UUID], *, recover: bool = True) -> None:
        """Send these messages as far as they go now: recover any half-done submission first, then
        step until no message waits for an immediate fallback."""
        if recover:
            await self.recover(message_ids=ids, older_than=self.lease)
        todo = list(ids)
        for _ in range(8):  # a chain has at most 4 channels; each step moves a message on or parks it
            if not todo:
                return
            todo = await self._step(todo)
        if todo:
            log.warning("dispatch_steps_exhausted", messages=len(todo))

    async def send_due(self, limit: int = 1000, stranded: timedelta = timedelta(minutes=5)) -> int:
        """Cron: messages whose `not_before` has come (night deferral, retry backoff, rate limits),
        and queued ones whose job was lost (untouched for `stranded`)."""
        now = self.clock.now()
        async with session_scope(self.sessionmaker) as session:
            ids = await repo.due_message_ids(session, now, limit, stranded_after=now - stranded)
        if ids:
            await self.run(ids)
        return len(ids)

    # --- one step ---------------------------------------------------------------------------------

    async def _step(self, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        now = self.clock.now()
        async with session_scope(self.sessionmaker) as session:
            messages = await repo.claim_due(session, ids, now)
            if not messages:
                return []
            planned, again = await self._plan(session, messages, now)
        if self.before_submit is not None and planned:
            await self.before_submit()
        results = await self._submit_all(planned)
        if self.after_submit is not None:
            for provider, subs in results.items():
                await self.after_submit(provider, subs)
        async with session_scope(self.sessionmaker) as session:
            again += await self._record(session, planned, results)
        return again

    async def _plan(
        self, session: AsyncSession, messages: list[MessageRow], now: datetime
    ) -> tuple[list[_Planned], list[uuid.UUID]]:
        """Compose, apply policy, and write `submitting` attempts (committed by the caller before any
        provider call). Returns what to submit and the ids to step again at once."""
        tzs = await self._timezones(session, {m.workspace_id for m in messages})
        # only a message that was here before can have attempts already
        seqs = await repo.next_seqs(
            session, (m.id for m in messages if m.chain_pos or m.tries or m.reason or m.not_before)
        )
        new_ids = _random_ids(len(messages))  # one attempt at most per message and step
        planned: list[_Planned] = []
        attempts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        again: list[uuid.UUID] = []
        allowed: dict[str, bool] = {}

        by_workspace: dict[uuid.UUID, list[MessageRow]] = defaultdict(list)
        for m in messages:
            by_workspace[m.workspace_id].append(m)
        for workspace_id, group in by_workspace.items():
            items = [self._item(m, f"{m.id.hex}-{seqs.get(m.id, 1)}") for m in group]
            prepared = await self.composer.compose(session, workspace_id, items, now)
            for m, prep in zip(group, prepared, strict=True):
                seq = seqs.get(m.id, 1)
                if prep.action == "skip":
                    # a reason of this channel (not a friend, no consent for it, no address ...):
                    # the next channel of the chain may still reach; skipped when none is left
                    why = _join_reason(
                        m.reason if m.chain_pos else None, f"{m.chain[m.chain_pos]}: {prep.reason}"
                    )
                    if m.chain_pos + 1 < len(m.chain):
                        updates.append(
                            _message_row(m, now, status="queued", reason=why)
                            | {"chain_pos": m.chain_pos + 1, "tries": 0}
                        )
                        again.append(m.id)
                    else:
                        updates.append(_message_row(m, now, status="skipped", reason=why, finished=True))
                    continue
                if prep.action == "defer":
                    updates.append(
                        _message_row(
                            m, now, status="deferred", reason=prep.reason, not_before=prep.not_before
                        )
                    )
                    continue
                outgoing = prep.outgoing
                assert outgoing is not None
                channel = outgoing.channel
                adapter = self.adapters.get(channel) or self.adapters.get(Channel(m.chain[m.chain_pos]))
                if adapter is not None and adapter.name not in allowed:
                    # one decision per provider and step: a half-open breaker's probe is this step's call
                    allowed[adapter.name] = self.guards.breaker(adapter.name).allow()
                if adapter is None or not allowed[adapter.name]:
                    # the chain moves on at once; the attempt row says why
                    code = NO_PROVIDER if adapter is None else CIRCUIT_OPEN
                    provider = adapter.name if adapter else "-"
                    attempts.append(
                        _attempt_row(
                            next(new_ids),
                            m,
                            seq,
                            outgoing,
                            provider,
                            now,
                            state="done",
                            outcome=Outcome.unreachable,
                        )
                        | {"code": code, "detail": f"{provider}: {code}"}
                    )
                    d = _moved_on(m, f"{channel.value}: {code}", tzs.get(m.workspace_id, "Asia/Seoul"), now)
                    updates.append(_apply_decision(m, d, now))
                    if d.now:
                        again.append(m.id)
                    continue
                row = _attempt_row(next(new_ids), m, seq, outgoing, adapter.name, now, state="submitting")
                attempts.append(row)
                planned.append(_Planned(m, row, outgoing, adapter))
        await repo.insert_attempts(session, attempts, now)
        await repo.update_messages(session, updates, now)
        return planned, again

    async def _timezones(self, session: AsyncSession, workspace_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Workspace timezones, remembered for a minute per process (they change rarely)."""
        now = self.clock.now()
        missing = {w for w in workspace_ids if w not in self._tz or self._tz[w][0] < now}
        if missing:
            for w, tz in (await repo.timezones(session, missing)).items():
                self._tz[w] = (now + timedelta(minutes=1), tz)
        return {w: self._tz[w][1] for w in workspace_ids if w in self._tz}

    def _wants_provider_fallback(self, m: MessageRow, channel: Channel) -> bool:
        if not self.provider_fallback or channel not in KAKAO or m.chain_pos + 1 >= len(m.chain):
            return False
        if Channel(m.chain[m.chain_pos + 1]) not in PROVIDER_FALLBACK_TO:
            return False
        adapter = self.adapters.get(channel)
        # every Kakao provider DOMAIN lists runs the SMS fallback on request; an adapter opts out
        return adapter is not None and bool(getattr(adapter, "supports_provider_fallback", True))

    def _item(self, m: MessageRow, idempotency_key: str) -> ComposeItem:
        channel = Channel(m.chain[m.chain_pos])
        fallback = Channel(m.chain[m.chain_pos + 1]) if self._wants_provider_fallback(m, channel) else None
        return ComposeItem(
            message_id=m.id,
            channel=channel,
            kind=m.kind,
            profile_id=m.profile_id,
            address=m.address,
            template_id=_template_id(m, channel),
            content=m.content,
            variables=m.variables,
            is_ad=m.is_ad,
            night_policy=m.night_policy,
            campaign_id=m.campaign_id,
            idempotency_key=idempotency_key,
            fallback=fallback,
            fallback_template_id=_template_id(m, fallback) if fallback is not None else None,
        )

    # --- provider calls ---------------------------------------------------------------------------

    async def _submit_all(self, planned: Sequence[_Planned]) -> dict[str, list[Submission]]:
        groups: dict[tuple[str, Channel], list[_Planned]] = defaultdict(list)
        for p in planned:
            groups[(p.adapter.name, p.outgoing.channel)].append(p)
        keys = list(groups)
        answers = await asyncio.gather(*(self._submit_group(groups[k]) for k in keys))
        out: dict[str, list[Submission]] = defaultdict(list)
        for (provider, _channel), subs in zip(keys, answers, strict=True):
            out[provider].extend(subs)
        return out

    async def _submit_group(self, group: Sequence[_Planned]) -> list[Submission]:
        adapter = group[0].adapter
        outgoing = [p.outgoing for p in group]
        breaker = self.guards.breaker(adapter.name)
        await self.guards.acquire(adapter.name, len(outgoing))
        try:
            subs = await self._call(adapter.submit, outgoing)
        except ProviderUnavailable as exc:
            breaker.failure()
            log.warning(
                "provider_unavailable", provider=adapter.name, detail=exc.detail, messages=len(outgoing)
            )
            return [
                Submission(
                    o.message_id, Outcome.transient, UNAVAILABLE, exc.detail, retry_after=exc.retry_after
                )
                for o in outgoing
            ]
        if any(s.outcome is Outcome.misconfigured for s in subs):
            breaker.trip()
        else:
            breaker.success()
        return subs

    async def _call(self, fn: Callable[[Any], Awaitable[Any]], arg: Any) -> Any:
        async for attempt in stamina.retry_context(
            on=ProviderUnavailable,
            attempts=self.call_attempts,
            timeout=self.call_timeout_s,
            wait_initial=0.05,
            wait_max=1.0,
            wait_jitter=0.1,
        ):
            with attempt:
                return await fn(arg)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- recording --------------------------------------------------------------------------------

    async def _record(
        self,
        session: AsyncSession,
        planned: Sequence[_Planned],
        results: Mapping[str, Sequence[Submission]],
        *,
        lookup: bool = False,
    ) -> list[uuid.UUID]:
        now = self.clock.now()
        by_message = {(provider, s.message_id): s for provider, subs in results.items() for s in subs}
        tzs = await self._timezones(session, {p.message.workspace_id for p in planned})
        attempt_rows: list[dict[str, Any]] = []
        message_rows: list[dict[str, Any]] = []
        again: list[uuid.UUID] = []
        refs: dict[str, list[str]] = defaultdict(list)
        costed: list[uuid.UUID] = []
        for p in planned:
            sub = by_message.get((p.adapter.name, p.message.id))
            if sub is None:
                sub = Submission(p.message.id, Outcome.transient, "no_answer", "the provider skipped it")
            d = self._decide_submission(
                p.message, p.attempt, sub, tzs.get(p.message.workspace_id, "Asia/Seoul"), now, lookup=lookup
            )
            attempt_rows.append(_attempt_answer(p.attempt["id"], sub, d, now))
            message_rows.append(_apply_decision(p.message, d, now))
            if d.now:
                again.append(p.message.id)
            if sub.provider_ref:
                refs[p.adapter.name].append(sub.provider_ref)
            if sub.cost_krw:
                costed.append(p.message.id)
        # the locks first, in a statement of their own: the next one's snapshot then sees every
        # report stored before they were granted (a report racing this record is not missed)
        await repo.lock_provider_refs(session, refs)
        waiting = await repo.record_answers(session, attempt_rows, message_rows, refs, now)
        await repo.refresh_costs(session, costed)
        if not waiting:
            return again
        for provider, provider_refs in refs.items():
            early = await repo.unapplied_reports(session, provider=provider, refs=provider_refs)
            if early:
                again += await self._apply(session, provider, early)
        return again

    def _decide_submission(
        self,
        m: MessageRow,
        attempt: Mapping[str, Any],
        sub: Submission,
        tz: str,
        now: datetime,
        *,
        lookup: bool,
    ) -> Decision:
        state = MessageState(tuple(m.chain), m.chain_pos, m.tries, "sending")
        if (
            lookup
            and attempt.get("provider_fallback")
            and sub.outcome in (Outcome.unreachable, Outcome.failed)
        ):
            # found after a crash, Kakao failed and the provider's own SMS may be under way: its
            # report (or a poll) says how that ended; falling back now could send a second SMS
            sub = replace(sub, outcome=Outcome.accepted)
        d = decide(
            state,
            channel=attempt["channel"],
            outcome=sub.outcome,
            code=sub.code,
            now=now,
            tz=tz,
            retry_after=sub.retry_after,
            detail=sub.detail,
        )
        if d.trip_breaker:
            self.guards.breaker(attempt["provider"]).trip()
        return d

    # --- crash recovery ---------------------------------------------------------------------------

    async def recover(
        self, *, message_ids: Sequence[uuid.UUID] | None = None, older_than: timedelta | None = None
    ) -> int:
        """Attempts left `submitting` (a worker died between submit and record): ask the provider
        whether it holds the key; record its answer if so, else submit with the same key now."""
        before = self.clock.now() - older_than if older_than is not None else None
        async with session_scope(self.sessionmaker) as session:
            stale = await repo.submitting_attempts(session, message_ids=message_ids, before=before)
            if not stale:
                return 0
            messages = await repo.messages_by_id(session, {a.message_id for a in stale}, lock=True)
            sem = asyncio.Semaphore(self.lookup_concurrency)

            async def look(a: DeliveryAttempt) -> tuple[DeliveryAttempt, Submission | None]:
                adapter = self.adapter_named(a.provider)
                if adapter is None:
                    return a, Submission(a.message_id, Outcome.transient, NO_PROVIDER)
                async with sem:
                    try:
                        return a, await self._call(adapter.lookup, repo.outgoing_from_json(a.payload))
                    except ProviderUnavailable as exc:
                        return a, Submission(a.message_id, Outcome.transient, UNAVAILABLE, exc.detail)

            found = await asyncio.gather(*(look(a) for a in stale))
            planned: list[_Planned] = []
            answered: dict[str, list[Submission]] = defaultdict(list)
            resubmit: list[_Planned] = []
            for a, sub in found:
                m = messages[a.message_id]
                adapter = self.adapter_named(a.provider)
                p = _Planned(MessageRow.of(m), _attempt_dict(a), repo.outgoing_from_json(a.payload), adapter)  # type: ignore[arg-type]
                planned.append(p)
                if sub is None:
                    resubmit.append(p)
                else:
                    answered[a.provider].append(sub)
            log.info("recovering_attempts", found=len(planned) - len(resubmit), resubmitting=len(resubmit))
            if resubmit:
                for provider, subs in (await self._submit_all(resubmit)).items():
                    answered[provider].extend(subs)
            again = await self._record(session, planned, answered, lookup=True)
        if again:
            await self.run(again)
        return len(planned)

    # --- delivery reports -------------------------------------------------------------------------

    async def receive_reports(
        self, session: AsyncSession, provider: str, reports: Sequence[ProviderReport]
    ) -> list[uuid.UUID]:
        """Keep the reports and apply those whose attempt is known; the rest wait for it. Returns the
        messages that should go to their next channel now (the caller runs them after commit)."""
        now = self.clock.now()
        rows = [
            {
                "id": uuid.uuid4(),
                "provider": provider,
                "provider_ref": r.provider_ref,
                "outcome": r.outcome.value,
                "code": r.code,
                "resend_status": r.resend_status.value if r.resend_status else "",
                "cost_krw": r.cost_krw,
                "detail": r.detail or None,
                "occurred_at": r.occurred_at,
                "received_at": now,
            }
            for r in reports
        ]
        await repo.lock_refs(session, provider, [r.provider_ref for r in reports])
        await repo.store_reports(session, rows)
        stored = await repo.unapplied_reports(
            session, provider=provider, refs=[r.provider_ref for r in reports]
        )
        return await self._apply(session, provider, stored) if stored else []

    async def _apply(
        self, session: AsyncSession, provider: str, reports: Sequence[DeliveryReport]
    ) -> list[uuid.UUID]:
        now = self.clock.now()
        attempts = await repo.attempts_by_ref(session, provider, list({r.provider_ref for r in reports}))
        if not attempts:
            return []
        messages = await repo.messages_by_id(session, {a.message_id for a in attempts.values()}, lock=True)
        tzs = await repo.timezones(session, {m.workspace_id for m in messages.values()})
        applied: list[uuid.UUID] = []
        again: list[uuid.UUID] = []
        touched: set[uuid.UUID] = set()
        # finals before waits: "delivered" then a late "resending" must not reopen anything
        for r in sorted(reports, key=lambda r: r.occurred_at):
            a = attempts.get(r.provider_ref)
            if a is None:
                continue  # its submission is not recorded yet: applied when it is
            applied.append(r.id)
            m = messages[a.message_id]
            if a.state == "done":
                continue
            if Outcome(r.outcome) in (Outcome.transient, Outcome.rate_limited, Outcome.accepted):
                # an interim word (handset off, carrier busy): the provider keeps trying and reports
                # again; sending it ourselves now could deliver it twice
                a.code = r.code
                a.reported_at = now
                continue
            resend = ResendStatus(r.resend_status) if r.resend_status else None
            state = MessageState(tuple(m.chain), m.chain_pos, m.tries, m.status)
            d = decide(
                state,
                channel=a.channel,
                outcome=Outcome(r.outcome),
                code=r.code,
                now=now,
                tz=tzs.get(m.workspace_id, "Asia/Seoul"),
                provider_fallback=a.provider_fallback,
                resend_status=resend,
                detail=r.detail or "",
            )
            if d.trip_breaker:
                self.guards.breaker(provider).trip()
            a.state = d.attempt_state
            a.outcome = r.outcome
            a.code = r.code
            a.resend_status = r.resend_status or a.resend_status
            a.reported_at = now
            if r.cost_krw is not None:
                a.cost_krw = r.cost_krw
            if d.status is not None:
                for key, value in _apply_decision(m, d, now).items():
                    setattr(m, key, value)
            if d.opted_out:
                to = str(a.payload.get("to", ""))
                await self.composer.suppress(
                    session, m.workspace_id, Channel(a.channel), to, f"provider:{r.code}", now
                )
            if d.now:
                again.append(m.id)
            touched.add(m.id)
        await session.flush()
        await repo.mark_reports_applied(session, applied, now)
        await repo.refresh_costs(session, list(touched))
        return again

    async def apply_stray_reports(self, older_than: timedelta = timedelta(seconds=30)) -> int:
        """Cron: reports that came while their submission was being recorded (a race the recording
        step cannot see), applied now."""
        async with session_scope(self.sessionmaker) as session:
            stray = await repo.unapplied_reports(session, received_before=self.clock.now() - older_than)
            by_provider: dict[str, list[DeliveryReport]] = defaultdict(list)
            for r in stray:
                by_provider[r.provider].append(r)
            again: list[uuid.UUID] = []
            for provider, reports in by_provider.items():
                again += await self._apply(session, provider, reports)
        if again:
            await self.run(again)
        return len(stray)

    async def poll_pending(
        self,
        older_than: timedelta = timedelta(minutes=10),
        limit: int = 500,
        give_up: timedelta = timedelta(hours=72),
    ) -> int:
        """Cron: attempts still waiting for a report after `older_than` (a report may be lost): ask."""
        async with session_scope(self.sessionmaker) as session:
            waiting = await repo.pending_attempts(session, self.clock.now() - older_than, limit)
        sem = asyncio.Semaphore(self.lookup_concurrency)

        async def ask(a: DeliveryAttempt) -> tuple[str, ProviderReport | None]:
            adapter = self.adapter_named(a.provider)
            if adapter is None or a.provider_ref is None:
                return a.provider, None
            async with sem:
                try:
                    return a.provider, await adapter.poll(a.provider_ref)
                except ProviderUnavailable:
                    return a.provider, None

        answers = await asyncio.gather(*(ask(a) for a in waiting))
        by_provider: dict[str, list[ProviderReport]] = defaultdict(list)
        unanswered: list[uuid.UUID] = []
        for a, (provider, report) in zip(waiting, answers, strict=True):
            if report is not None:
                by_provider[provider].append(report)
            else:
                unanswered.append(a.id)
        again: list[uuid.UUID] = []
        async with session_scope(self.sessionmaker) as session:
            # asked and still pending: ask again after `older_than`; after `give_up`, the answer
            # at submission stands (the message stays `sent`) and it is not asked again
            await repo.touch_pending(session, unanswered, self.clock.now(), self.clock.now() - give_up)
            for provider, reports in by_provider.items():
                again += await self.receive_reports(session, provider, reports)
        if again:
            await self.run(again)
        return sum(len(r) for r in by_provider.values())


# --- rows ---------------------------------------------------------------------------------------


def _join_reason(before: str | None, now: str) -> str:
    return (f"{before}; {now}" if before else now)[:255]


def _template_id(m: MessageRow, channel: Channel) -> uuid.UUID | None:
    template = m.templates.get(channel.value)
    return _template_uuid(template) if template else m.template_id


@functools.lru_cache(maxsize=4096)
def _template_uuid(text: str) -> uuid.UUID:
    """A template id of a message's `templates` (JSON text); a batch names the same few again and again."""
    return uuid.UUID(text)


def _random_ids(count: int) -> Iterator[uuid.UUID]:
    """`count` random (version 4) uuids from one os.urandom call, not one call each."""
    raw = os.urandom(16 * count)
    return (repo.uuid_with_version(int.from_bytes(raw[i : i + 16]), 4) for i in range(0, 16 * count, 16))


def _attempt_row(
    attempt_id: uuid.UUID,
    m: MessageRow,
    seq: int,
    outgoing: Outgoing,
    provider: str,
    now: datetime,
    *,
    state: str,
    outcome: Outcome | None = None,
) -> dict[str, Any]:
    return {
        "id": attempt_id,
        "message_id": m.id,
        "workspace_id": m.workspace_id,
        "seq": seq,
        "channel": outgoing.channel.value,
        "provider": provider,
        "provider_key": outgoing.idempotency_key,
        "provider_ref": None,
        "provider_fallback": outgoing.provider_fallback is not None,
        "state": state,
        "outcome": outcome.value if outcome else None,
        "code": None,
        "detail": None,
        "resend_status": None,
        "cost_krw": 0,
        "payload": repo.outgoing_json(outgoing),
        "submitted_at": now,
        "answered_at": now if state == "done" else None,
        "reported_at": None,
    }


def _attempt_dict(a: DeliveryAttempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "channel": a.channel,
        "provider": a.provider,
        "provider_fallback": a.provider_fallback,
    }


def _attempt_answer(attempt_id: uuid.UUID, sub: Submission, d: Decision, now: datetime) -> dict[str, Any]:
    return {
        "id": attempt_id,
        "state": d.attempt_state,
        "outcome": sub.outcome.value,
        "code": sub.code[:32],
        "detail": sub.detail or None,
        "provider_ref": sub.provider_ref,
        "cost_krw": sub.cost_krw or 0,
        "answered_at": now,
    }


def _moved_on(m: MessageRow, why: str, tz: str, now: datetime) -> Decision:
    state = MessageState(tuple(m.chain), m.chain_pos, m.tries, "sending")
    return decide(state, channel=m.chain[m.chain_pos], outcome=Outcome.unreachable, code=why, now=now, tz=tz)


def _message_row(
    m: AnyMessage,
    now: datetime,
    *,
    status: str,
    reason: str | None = None,
    not_before: datetime | None = None,
    finished: bool = False,
) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": status,
        "reason": reason,
        "not_before": not_before,
        "chain_pos": m.chain_pos,
        "tries": m.tries,
        "channel": m.channel,
        "updated_at": now,
        "finished_at": now if finished else None,
    }


def _apply_decision(m: AnyMessage, d: Decision, now: datetime) -> dict[str, Any]:
    """The message's new fields after a decision (all keys always present: one bulk UPDATE)."""
    if d.status is None:
        return _message_row(m, now, status=m.status, reason=m.reason, not_before=m.not_before)
    return {
        "id": m.id,
        "status": d.status,
        # keep the last word on why (a fallback's cause stays readable after it delivered)
        "reason": d.reason if d.reason is not None else m.reason,
        "not_before": d.not_before,
        "chain_pos": d.chain_pos if d.chain_pos is not None else m.chain_pos,
        "tries": d.tries if d.tries is not None else m.tries,
        "channel": d.channel if d.channel is not None else m.channel,
        "updated_at": now,
        "finished_at": now if d.final else None,
    }
