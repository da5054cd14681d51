"""There is no Docker engine here, so check docker-compose.yml by reading it: every process of the
local stack is in it, and every command it runs exists in this project."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import yaml

from infra.cli import build_parser
from infra.embedded import POSTGRES_SETTINGS
from infra.supervisor import process_specs
from shared.settings import PROJECT_ROOT, SERVICE_PORTS

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _check_command(command: list[str]) -> None:
    program, *args = command
    if program == "dasi":
        build_parser().parse_args(args)  # exits on an unknown sub-command
    elif program == "uvicorn":
        module, _, factory = next(a for a in args if ":" in a).partition(":")
        assert callable(getattr(importlib.import_module(module), factory))
        assert "--factory" in args
    elif program == "arq":
        module, _, attribute = args[0].rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attribute), type)
    elif program not in ("valkey-server", "postgres"):
        raise AssertionError(f"unexpected program {program!r}")


def test_every_command_exists_in_the_project():
    for name, service in SERVICES.items():
        if "command" in service:
            _check_command(service["command"])
        assert "healthcheck" in service or name == "migrate", f"{name} has no healthcheck"


def test_compose_runs_every_process_of_the_local_stack_on_its_fixed_port():
    for spec in process_specs():
        assert spec.name in SERVICES, f"{spec.name} runs under `dasi up` but not in docker-compose.yml"
    for name, port in SERVICE_PORTS.items():
        assert SERVICES[name]["ports"] == [f"{port}:{port}"]
        assert str(port) in SERVICES[name]["command"]


def test_services_wait_for_the_migration():
    for name in ("ingest", "segmenter", "scheduler", "dispatcher", "attribution"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["command"] == ["dasi", "migrate"]


def test_the_image_installs_what_the_commands_need():
    dockerfile = (PROJECT_ROOT / "infra" / "Dockerfile").read_text()
    for folder in ("shared", "services", "infra"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert Path(PROJECT_ROOT / "infra" / "Dockerfile").exists()


def test_compose_postgres_has_the_embedded_servers_settings():
    command = SERVICES["postgres"]["command"]
    given = dict(arg.split("=", 1) for arg in command if "=" in arg)
    assert given == POSTGRES_SETTINGS
