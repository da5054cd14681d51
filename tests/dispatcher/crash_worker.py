"""A dispatcher process that is killed (SIGKILL, no cleanup) right after the provider accepted its
submissions and before it records them. Run by test_pipeline_reliability as a subprocess:

    python -m tests.dispatcher.crash_worker <sandbox url> <appkey> <SendBatch job payload JSON>
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import orjson

from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.wiring import DispatchSettings, build_dispatcher
from shared.clock import SystemClock
from shared.contracts import SendBatch, decode
from shared.db import create_engine, create_sessionmaker
from shared.settings import get_settings


async def main(url: str, appkey: str, payload: bytes) -> None:
    settings = get_settings()
    engine = create_engine(settings)
    providers = ProviderSettings(env="test", nhn_sms_base_url=url, nhn_sms_appkey=appkey)
    dispatcher, _close = build_dispatcher(
        settings, create_sessionmaker(engine), SystemClock(), providers, DispatchSettings()
    )

    async def kill_9(*_args: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    dispatcher.after_submit = kill_9
    batch = decode(orjson.loads(payload))
    assert isinstance(batch, SendBatch)
    await dispatcher.dispatch(batch)
    raise SystemExit("not killed")  # pragma: no cover


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].encode()))
