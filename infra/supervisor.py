"""`dasi up`: every service, worker and the provider sandbox under one supervisor (honcho).

Each process's output is prefixed with its name; Ctrl-C (or SIGTERM) stops them all, then the
embedded servers. If one process dies, the supervisor stops the rest rather than run half a stack.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass

import psutil
from honcho.manager import Manager
from honcho.printer import Printer

from shared.settings import PROJECT_ROOT, SERVICE_PORTS

SERVICES = ("ingest", "segmenter", "scheduler", "dispatcher", "attribution")
# every process of a stack carries this marker, so the next start can find a hard-killed stack's orphans
STACK_MARKER = "DASI_STACK_STATE_DIR"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]


def _has_worker(service: str) -> bool:
    return importlib.util.find_spec(f"services.{service}.worker") is not None


def process_specs(host: str = "127.0.0.1") -> list[ProcessSpec]:
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "--factory", "--host", host, "--no-access-log"]
    specs = [
        ProcessSpec(name, [*uvicorn, "--port", str(SERVICE_PORTS[name]), f"services.{name}.main:create_app"])
        for name in SERVICES
    ]
    specs += [
        ProcessSpec(f"{name}-worker", [python, "-m", "arq", f"services.{name}.worker.WorkerSettings"])
        for name in SERVICES
        if _has_worker(name)
    ]
    specs.append(
        ProcessSpec(
            "sandbox", [*uvicorn, "--port", str(SERVICE_PORTS["sandbox"]), "infra.sandbox.main:create_app"]
        )
    )
    return specs


def stop_orphans(state_dir: str) -> int:
    """Terminate processes left by a supervisor of this stack that was killed hard; returns how many."""
    orphans = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.pid != os.getpid() and process.environ().get(STACK_MARKER) == state_dir:
                orphans.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    for process in orphans:
        process.terminate()
    _, alive = psutil.wait_procs(orphans, timeout=10)
    for process in alive:
        process.kill()
    return len(orphans)


def run(env: dict[str, str], state_dir: str, host: str = "127.0.0.1") -> int:
    """Run the stack in the foreground until Ctrl-C or a process exits; returns the exit code."""
    manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
    child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", STACK_MARKER: state_dir}
    # the sandbox reports deliveries to the local dispatcher, as a provider would to production
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    child_env.setdefault(
        "DASI_SANDBOX_WEBHOOK_BASE_URL", f"http://{local}:{SERVICE_PORTS['dispatcher']}/v1/webhooks"
    )
    for spec in process_specs(host):
        manager.add_process(spec.name, shlex.join(spec.argv), env=child_env, cwd=str(PROJECT_ROOT))
    manager.loop()
    return int(manager.returncode or 0)
