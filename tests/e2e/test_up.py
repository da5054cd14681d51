"""`dasi up` end to end: all five services and the sandbox become ready under one supervisor, with
prefixed logs, and one Ctrl-C stops every process it started. Uses the test servers (URLs set), so
it starts no embedded ones; needs ports 8001-8005 and 8010 free (stop your own `make up` first)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from shared.settings import PROJECT_ROOT, SERVICE_PORTS


def _all_ready() -> bool:
    try:
        return all(
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            for port in SERVICE_PORTS.values()
        )
    except httpx.HTTPError:
        return False


def test_up_brings_every_service_to_ready_and_ctrl_c_stops_all(settings, tmp_path):
    log = (tmp_path / "up.log").open("w+")
    env = {**os.environ, "DASI_DATABASE_URL": settings.database_url, "DASI_REDIS_URL": settings.redis_url}
    up = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _all_ready():
            assert up.poll() is None, "dasi up exited early"
            assert time.monotonic() < deadline, "services did not become ready in 60 s"
            time.sleep(0.3)
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 6

        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert up.wait(timeout=20) in (0, 130)  # 130: stopped by SIGINT, as after Ctrl-C
        time.sleep(0.5)
        assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    log.seek(0)
    output = log.read()
    for name in SERVICE_PORTS:
        assert f"{name} " in output and "|" in output  # every process's lines carry its name
    assert "Application startup complete" in output


def test_a_hard_killed_supervisor_leaves_nothing_the_next_start_cannot_clear(settings, tmp_path):
    env = {**os.environ, "DASI_DATABASE_URL": settings.database_url, "DASI_REDIS_URL": settings.redis_url}
    first = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    second = None
    try:
        deadline = time.monotonic() + 60
        while not _all_ready():
            assert time.monotonic() < deadline
            time.sleep(0.3)
        first.kill()  # SIGKILL: the services it started are orphaned, still holding their ports
        first.wait()
        assert _all_ready()

        log = (tmp_path / "second.log").open("w+")
        second = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "up"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        time.sleep(3)
        deadline = time.monotonic() + 60
        while not _all_ready():
            assert second.poll() is None, "the second start failed"
            assert time.monotonic() < deadline
            time.sleep(0.3)
        log.seek(0)
        assert "left by a previous run" in log.read()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                process.wait(timeout=20)
