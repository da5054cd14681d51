"""The official Segment and RudderStack Python SDKs, unchanged, against ingest served over real HTTP.

What the SDKs send (read from their sources, segment-analytics-python 2.4 and rudder-sdk-python 2.1):

- Every call, queued or sync, is a `POST {host}/v1/batch` with `{"batch": [...], "sentAt": now}`;
  Segment also puts `"writeKey"` in the body. `sentAt` and each message's `timestamp` come from the
  machine's real clock, so against ingest's frozen clock they exercise the clock-skew correction.
- Auth is HTTP Basic with the write key as username and an empty password; User-Agent
  `analytics-python/<version>` (both SDKs).
- With `gzip=True` (Segment's default is off, RudderStack's on) the body is gzip with
  `Content-Encoding: gzip` and `Content-Type: application/json`.
- Each message carries a uuid4 `messageId` unless given one, `context.library`, `integrations`;
  RudderStack adds `channel: "server"` and `integrations: {"All": true}`, and its identify puts
  the traits in `context.traits` only (no top-level `traits`).
- In queue mode `flush()` blocks until the consumer thread has uploaded, and a failed upload is
  reported through `on_error(exception, batch)`; sync mode raises instead and never calls it.
- On a non-2xx answer both read `code` and `message` from the JSON body, so Dasi's problem+json
  carries them as extension members (without them RudderStack raised KeyError('code') and retried
  even a 401 as if the network had failed).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest_asyncio
import uvicorn
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from services.ingest.main import create_app
from shared.testing.plugin import DEFAULT_TEST_NOW
from tests.ingest.conftest import events_of, identities_of, profiles_of, published, unpublished

USER_ID = "user-1004"
ANONYMOUS_ID = "anon-7f3a"
TRAITS = {"name": "김민지", "phone": "010-1234-5678"}
ADDED = {"product_id": "SKU-1004", "name": "수분크림", "price": 28000, "quantity": 1}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    def json(self) -> Any:
        raw = gzip.decompress(self.body) if self.headers.get("content-encoding") == "gzip" else self.body
        return json.loads(raw)


@dataclass
class Recorder:
    """ASGI middleware that keeps each HTTP request the SDKs made and the status it got."""

    app: Any
    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record = Recorded(scope["method"], scope["path"], headers, b"")
        self.requests.append(record)

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                record.body += message.get("body", b"")
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        await self.app(scope, recording_receive, recording_send)


@dataclass
class Served:
    url: str
    recorder: Recorder


@pytest_asyncio.fixture
async def server(settings, clock, db, redis) -> AsyncIterator[Served]:
    """The ingest app behind uvicorn on 127.0.0.1 (a free port), in the test's event loop."""
    recorder = Recorder(create_app(settings, clock=clock))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        recorder, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not uv.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}", recorder)
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@dataclass
class Sdk:
    name: str
    make: Callable[..., Any]


def _segment(write_key: str, host: str, on_error: Callable[..., None]) -> Any:
    return SegmentClient(
        write_key,
        host=host,
        gzip=True,
        on_error=on_error,
        max_retries=1,
        upload_interval=0.05,
        max_total_backoff_duration=5,
    )


def _rudderstack(write_key: str, host: str, on_error: Callable[..., None]) -> Any:
    return RudderClient(
        write_key, host=host, gzip=True, on_error=on_error, max_retries=1, upload_interval=0.05
    )


SDKS = [Sdk("segment", _segment), Sdk("rudderstack", _rudderstack)]


@dataclass
class Session:
    """One SDK client against the served app, with the errors it reported through `on_error`."""

    client: Any = None
    errors: list[tuple[Exception, list[dict[str, Any]]]] = field(default_factory=list)

    async def run(self, calls: Callable[[Any], None]) -> None:
        """Make the (blocking) SDK calls and flush, off the event loop that serves them."""

        def work() -> None:
            calls(self.client)
            self.client.flush()

        await asyncio.wait_for(asyncio.to_thread(work), 60)


@dataclass
class Connector:
    """Makes clients of one SDK for the served app; shuts them all down after the test."""

    sdk: Sdk
    url: str
    sessions: list[Session] = field(default_factory=list)

    def __call__(self, write_key: str) -> Session:
        session = Session()
        session.client = self.sdk.make(
            write_key, self.url, lambda exc, batch: session.errors.append((exc, batch))
        )
        self.sessions.append(session)
        return session


@pytest_asyncio.fixture(params=SDKS, ids=lambda sdk: sdk.name)
async def connect(request, server) -> AsyncIterator[Connector]:
    connector = Connector(request.param, server.url)
    try:
        yield connector
    finally:
        for session in connector.sessions:
            await asyncio.to_thread(session.client.shutdown)


def _journey(client: Any) -> None:
    """A shopper browses anonymously, signs in, adds to cart; the store then aliases the two ids."""
    client.page(anonymous_id=ANONYMOUS_ID, name="수분크림 상세", category="skincare")
    client.screen(anonymous_id=ANONYMOUS_ID, name="장바구니", properties={"tab": "cart"})
    client.identify(user_id=USER_ID, traits=TRAITS)
    client.track(user_id=USER_ID, event="Product Added", properties=ADDED)
    client.group(user_id=USER_ID, group_id="vip", traits={"tier": "gold"})
    client.alias(previous_id=ANONYMOUS_ID, user_id=USER_ID)


def _assert_sent_like_the_sdk_says(server: Served, write_key: str) -> list[dict[str, Any]]:
    """Every request was a gzip batch with the write key as Basic username, and got a 200."""
    requests = server.recorder.requests
    assert requests
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    for sent in requests:
        assert (sent.method, sent.path, sent.status) == ("POST", "/v1/batch", 200)
        assert sent.headers["authorization"] == basic
        assert sent.headers["content-encoding"] == "gzip"
        assert sent.headers["user-agent"].startswith("analytics-python/")
    bodies = [sent.json() for sent in requests]
    assert all(isinstance(body["batch"], list) and body["sentAt"] for body in bodies)
    return [message for body in bodies for message in body["batch"]]


async def test_every_call_of_the_sdk_is_stored(connect, server, shop, db, redis):
    session = connect(shop.write_key)

    await session.run(_journey)

    assert session.errors == []
    sent = _assert_sent_like_the_sdk_says(server, shop.write_key)
    assert [m["type"] for m in sent] == ["page", "screen", "identify", "track", "group", "alias"]

    events = await events_of(db, shop.workspace.id)
    by_type = {e.type: e for e in events}
    assert sorted(by_type) == ["alias", "group", "identify", "page", "screen", "track"]
    assert len(events) == 6
    assert {e.message_id for e in events} == {m["messageId"] for m in sent}
    assert (by_type["track"].name, by_type["track"].properties) == ("Product Added", ADDED)
    assert (by_type["page"].name, by_type["page"].properties) == ("수분크림 상세", {"category": "skincare"})
    assert (by_type["screen"].name, by_type["screen"].properties) == ("장바구니", {"tab": "cart"})
    assert (by_type["group"].name, by_type["group"].properties) == ("vip", {"tier": "gold"})
    assert by_type["alias"].properties == {"previousId": ANONYMOUS_ID}
    assert all(e.context["library"]["name"] == "analytics-python" for e in events)
    # the SDK's clock is the real one; its timestamp and sentAt put every event just before "now"
    assert all(DEFAULT_TEST_NOW - timedelta(seconds=30) <= e.occurred_at <= DEFAULT_TEST_NOW for e in events)
    assert all(e.received_at == DEFAULT_TEST_NOW for e in events)

    # the alias merged the anonymous browsing profile into the signed-in shopper's
    [profile] = await profiles_of(db, shop.workspace.id)
    assert profile.user_id == USER_ID
    assert await identities_of(db, shop.workspace.id) == {
        ("user_id", USER_ID): profile.id,
        ("anonymous_id", ANONYMOUS_ID): profile.id,
    }
    assert {e.profile_id for e in events} == {profile.id}

    announced = await published(db, redis)
    assert {m.event_id for m in announced} == {e.id for e in events}
    assert {m.profile_id for m in announced} == {profile.id}
    assert await unpublished(db) == []


async def test_identify_traits_reach_the_profile(connect, server, shop, db):
    # rudder-sdk-python sends identify traits only as context.traits; ingest reads them there too
    session = connect(shop.write_key)
    await session.run(lambda c: c.identify(user_id=USER_ID, traits=TRAITS))

    assert session.errors == []
    _assert_sent_like_the_sdk_says(server, shop.write_key)
    [profile] = await profiles_of(db, shop.workspace.id)
    assert (profile.user_id, profile.traits) == (USER_ID, TRAITS)
    [identify] = await events_of(db, shop.workspace.id)
    assert (identify.type, identify.properties) == ("identify", TRAITS)


async def test_the_same_message_id_sent_twice_is_stored_once(connect, server, shop, db, redis):
    session = connect(shop.write_key)
    message_id = str(uuid.uuid4())

    def added(client: Any) -> None:
        client.track(user_id=USER_ID, event="Product Added", properties=ADDED, message_id=message_id)

    await session.run(added)
    await session.run(added)  # a retry of the same message: a second request
    await session.run(lambda c: (added(c), added(c)))  # and twice in one batch (or back to back)

    assert session.errors == []
    sent = _assert_sent_like_the_sdk_says(server, shop.write_key)
    assert [m["messageId"] for m in sent] == [message_id] * 4
    assert len(server.recorder.requests) >= 3
    [event] = await events_of(db, shop.workspace.id)
    assert (event.message_id, event.name, event.properties) == (message_id, "Product Added", ADDED)
    assert len(await published(db, redis)) == 1


async def test_a_wrong_write_key_is_reported_through_on_error(connect, server, shop, db):
    """The check that `errors == []` above means something: a refused upload does reach on_error."""
    session = connect("dasi_wk_not-a-key")

    await session.run(lambda c: c.track(user_id=USER_ID, event="Product Added", properties=ADDED))

    [(error, [message])] = session.errors
    assert message["event"] == "Product Added"
    assert "unauthorized" in str(error)  # the SDK read `code` from the problem body
    assert server.recorder.requests
    assert {(r.path, r.status) for r in server.recorder.requests} == {("/v1/batch", 401)}
    assert await events_of(db, shop.workspace.id) == []
