"""The embedded default: real servers from wheels, on sockets of their own, data kept across starts,
and a hard-killed supervisor's servers found and reused by the next start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis as redis_sync
from sqlalchemy.engine import make_url

from infra import embedded


@pytest.fixture
def state_dir():
    with tempfile.TemporaryDirectory(prefix="dasi-emb-") as folder:
        path = Path(folder) / ".dasi"
        try:
            yield path
        finally:
            embedded.stop(path)


async def _query(url: str, sql: str):
    parsed = make_url(url)
    conn = await asyncpg.connect(host=parsed.query["host"], user="postgres", database=parsed.database)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_servers_start_keep_data_and_stop(state_dir):
    servers = embedded.start(state_dir)
    assert "5432" not in servers.database_url and "6379" not in servers.redis_url  # no standard ports
    assert asyncio.run(_query(servers.database_url, "SHOW server_version_num")).startswith("18")
    for name, value in embedded.POSTGRES_SETTINGS.items():  # sized for ingest's writes, from the first start
        assert asyncio.run(_query(servers.database_url, f"SHOW {name}")) == value
    asyncio.run(_query(servers.database_url, "CREATE TABLE kept AS SELECT 1 AS x"))
    redis_sync.Redis.from_url(servers.redis_url).set("kept", "다시")

    embedded.stop(state_dir)
    assert not embedded.postgres_running(state_dir) and not embedded.redis_running(state_dir)

    again = embedded.start(state_dir)  # a second start reuses the data
    assert asyncio.run(_query(again.database_url, "SELECT x FROM kept")) == 1
    assert redis_sync.Redis.from_url(again.redis_url).get("kept").decode() == "다시"


def test_valkey_starts_and_stops_from_a_relative_state_dir(state_dir, monkeypatch):
    monkeypatch.chdir(state_dir.parent)

    url = embedded.start_redis(Path(".dasi"))

    assert redis_sync.Redis.from_url(url).ping()
    embedded.stop_redis(Path(".dasi"))
    assert not embedded.redis_running(state_dir)


def test_a_hard_killed_owner_leaves_servers_that_the_next_start_reuses(state_dir):
    # a process starts the servers and is then SIGKILLed, as a supervisor might be
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from infra import embedded; "
                f"embedded.start(Path({str(state_dir)!r})); print('up', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout.readline().strip() == "up"
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    pg_pid = int((state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    valkey_pid = int((state_dir / "valkey" / "valkey.pid").read_text())
    assert psutil.pid_exists(pg_pid) and psutil.pid_exists(valkey_pid)

    embedded.start(state_dir)
    assert int((state_dir / "pgdata" / "postmaster.pid").read_text().split()[0]) == pg_pid
    assert int((state_dir / "valkey" / "valkey.pid").read_text()) == valkey_pid


def test_a_stale_redis_pid_file_is_recovered(state_dir):
    embedded.start_redis(state_dir)
    pid = int((state_dir / "valkey" / "valkey.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(5) if psutil.pid_exists(pid) else None
    url = embedded.start_redis(state_dir)
    assert redis_sync.Redis.from_url(url).ping()
    assert int((state_dir / "valkey" / "valkey.pid").read_text()) != pid
