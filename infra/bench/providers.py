"""Provider adapters benchmark: httpx's default transport against httpx-aiohttp, same run, against
the provider sandbox answering at once.

    .venv/bin/python -m infra.bench.providers [--requests 4000] [--concurrency 32] [--batches 20]

It starts the sandbox under uvicorn (uvloop, httptools) in a process of its own on --port and, for
each transport, prints:

1. raw: single-message FCM sends (one message per request, like FCM), `--concurrency` in flight:
   requests/s (= msgs/s);
2. push adapter: FcmAdapter.submit of 1,000 pushes at a time (64 in flight): msgs/s;
3. kakao adapter: NhnKakaoAdapter.submit of `--batches` x 1,000 alimtalk recipients (one call each):
   requests/s and msgs/s; likewise 4. sms adapter (different texts in one call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers.base import Channel, Outgoing
from services.dispatcher.providers.factory import build_providers
from shared.settings import PROJECT_ROOT

APPKEY = "bench"


def _client(kind: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    if kind == "httpx":
        return httpx.AsyncClient(limits=limits, timeout=30)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=30)


def _outgoing(channel: Channel, i: int) -> Outgoing:
    fields = {
        Channel.push: {
            "to": f"token-{i}",
            "sender": "dasi",
            "body": "장바구니를 잊으셨어요",
            "subject": "다시",
        },
        Channel.alimtalk: {
            "to": f"010{i % 10**8:08d}",
            "sender": "dasi-sandbox-sender-key",
            "body": "",
            "template_code": "CART_REMINDER",
            "template_parameters": {"이름": f"고객{i}"},
        },
        Channel.sms: {
            "to": f"010{i % 10**8:08d}",
            "sender": "15990000",
            "body": f"고객{i}님, 쿠폰이 도착했어요",
        },
    }[channel]
    return Outgoing(message_id=uuid.uuid4(), idempotency_key=uuid.uuid4().hex, channel=channel, **fields)  # type: ignore[arg-type]


async def _timed(fn: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    start = time.perf_counter()
    count = await fn()
    return time.perf_counter() - start, count


async def raw_fcm(client: httpx.AsyncClient, base: str, requests: int, concurrency: int) -> tuple[float, int]:
    url = f"{base}/v1/projects/{APPKEY}/messages:send"
    headers = {"Authorization": "Bearer bench"}
    body = {"message": {"token": "t", "notification": {"title": "다시", "body": "장바구니를 잊으셨어요"}}}
    remaining = iter(range(requests))

    async def worker() -> int:
        done = 0
        for _ in remaining:
            response = await client.post(url, json=body, headers=headers)
            response.raise_for_status()
            done += 1
        return done

    async def run() -> int:
        return sum(await asyncio.gather(*(worker() for _ in range(concurrency))))

    return await _timed(run)


async def raw_aiohttp(base: str, requests: int, concurrency: int) -> tuple[float, int]:
    url = f"{base}/v1/projects/{APPKEY}/messages:send"
    body = {"message": {"token": "t", "notification": {"title": "다시", "body": "장바구니를 잊으셨어요"}}}
    remaining = iter(range(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def worker() -> int:
            done = 0
            for _ in remaining:
                async with session.post(
                    url, json=body, headers={"Authorization": "Bearer bench"}
                ) as response:
                    await response.read()
                    done += 1
            return done

        async def run() -> int:
            return sum(await asyncio.gather(*(worker() for _ in range(concurrency))))

        return await _timed(run)


async def bench(kind: str, base: str, args: argparse.Namespace) -> None:
    settings = ProviderSettings(
        nhn_kakao_base_url=base,
        nhn_kakao_appkey=APPKEY,
        nhn_sms_base_url=base,
        nhn_sms_appkey=APPKEY,
        fcm_base_url=base,
        fcm_project_id=APPKEY,
        email_base_url=base,
        email_api_key=APPKEY,
    )
    async with _client(kind) as client:
        providers = build_providers(settings, client)
        await raw_fcm(client, base, 200, args.concurrency)  # warm up connections
        seconds, count = await raw_fcm(client, base, args.requests, args.concurrency)
        rate = count / seconds
        print(f"{kind:>13} raw FCM sends ({args.concurrency} in flight): {rate:9,.0f} requests/s = msgs/s")

        pushes = [_outgoing(Channel.push, i) for i in range(args.requests)]

        async def push() -> int:
            for start in range(0, len(pushes), 1000):
                await providers.push.submit(pushes[start : start + 1000])
            return len(pushes)

        seconds, count = await _timed(push)
        print(f"{kind:>13} push adapter (64 in flight):           {count / seconds:9,.0f} msgs/s")

        for channel, adapter in ((Channel.alimtalk, providers.kakao), (Channel.sms, providers.sms)):
            batches = [[_outgoing(channel, b * 1000 + i) for i in range(1000)] for b in range(args.batches)]

            async def send(batches: list[list[Outgoing]] = batches, adapter: object = adapter) -> int:
                submit = adapter.submit  # type: ignore[attr-defined]
                await asyncio.gather(*(submit(batch) for batch in batches))
                return sum(len(b) for b in batches)

            seconds, count = await _timed(send)
            print(
                f"{kind:>13} {channel.value} adapter, 1,000 a call:    "
                f"{len(batches) / seconds:9,.1f} requests/s {count / seconds:9,.0f} msgs/s"
            )


async def run(base: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient() as probe:
        for _ in range(200):
            try:
                if (await probe.get(f"{base}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the sandbox did not start")
    print(f"sandbox at {base} (own process); client: this process, one event loop\n")
    seconds, count = await raw_aiohttp(base, args.requests, args.concurrency)
    print(f"aiohttp alone (no httpx, reference): raw FCM sends {count / seconds:9,.0f} requests/s\n")
    for kind in ("httpx", "httpx-aiohttp"):
        await bench(kind, base, args)
        print()


def main(args: argparse.Namespace) -> None:
    base = f"http://127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "uvicorn", "infra.sandbox.main:create_app", "--factory"]
    command += ["--port", str(args.port), "--log-level", "warning", "--no-access-log"]
    command += ["--loop", "uvloop", "--http", "httptools"]
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, "DASI_LOG_LEVEL": "WARNING"})
    try:
        asyncio.run(run(base, args))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--port", type=int, default=18010)
    main(parser.parse_args())
