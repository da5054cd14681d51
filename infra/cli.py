"""`dasi`: the one command line for everything a person repeats.

dasi up                         run the whole platform (embedded servers unless URLs are set)
dasi migrate [--check]          apply the migrations (or check models against them)
dasi workspace create NAME      create a workspace; prints its keys once
dasi workspace list
dasi key create WORKSPACE_ID    a new secret (or --kind write) key; prints it once
dasi servers start|stop|status  the embedded PostgreSQL and Redis on their own
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from infra import embedded, migrate, stack, supervisor
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.settings import Settings, get_settings
from shared.workspaces import KeyKind, add_key, create_workspace, list_workspaces

T = TypeVar("T")


def _say(message: str) -> None:
    print(f"dasi | {message}", flush=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    state_dir = str(settings.state_dir.resolve())
    if orphans := supervisor.stop_orphans(state_dir):
        _say(f"stopped {orphans} processes left by a previous run that was killed")
    _say("starting servers" + ("" if settings.database_url and settings.redis_url else " (embedded default)"))
    servers = stack.start_servers(settings)
    try:
        _say(f"postgres: {servers.database_url}")
        _say(f"redis:    {servers.redis_url}")
        migrate.upgrade(servers.database_url)
        _say("migrations at head; starting services (Ctrl-C stops everything)")
        env = {"DASI_DATABASE_URL": servers.database_url, "DASI_REDIS_URL": servers.redis_url}
        return supervisor.run(env, state_dir, host=args.host)
    finally:
        _say("stopping servers" if (servers.embedded_postgres or servers.embedded_redis) else "done")
        stack.stop_servers(settings, servers)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with stack.servers_for_command(settings) as ready:
        url = ready.require_database_url()
        if args.check:
            migrate.check(url)
            _say("models and migrations agree")
        else:
            migrate.upgrade(url)
            _say("migrations at head")
    return 0


def _with_session(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_workspace_create(settings: Settings, args: argparse.Namespace) -> int:
    with stack.servers_for_command(settings) as ready:
        migrate.upgrade(ready.require_database_url())
        created = _with_session(
            ready, lambda s: create_workspace(s, args.name, timezone=args.timezone, currency=args.currency)
        )
    print(f"workspace  {created.workspace.id}  {args.name}  ({args.timezone}, {args.currency})")
    print(f"write key  {created.write_key}   (event ingestion; HTTP Basic username, safe to embed)")
    print(f"secret key {created.secret_key}   (management APIs; Authorization: Bearer ...)")
    print("Keys are stored hashed and shown only now: keep them.")
    return 0


def cmd_workspace_list(settings: Settings, args: argparse.Namespace) -> int:
    with stack.servers_for_command(settings) as ready:
        workspaces = _with_session(ready, list_workspaces)
    for w in workspaces:
        print(f"{w.id}  {w.name}  {w.timezone}  {w.currency}")
    return 0


def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    with stack.servers_for_command(settings) as ready:
        raw = _with_session(ready, lambda s: add_key(s, uuid.UUID(args.workspace_id), KeyKind(args.kind)))
    print(raw)
    return 0


def cmd_servers(settings: Settings, args: argparse.Namespace) -> int:
    state_dir = settings.state_dir.resolve()
    if args.action == "start":
        servers = embedded.start(state_dir)
        print(f"export DASI_DATABASE_URL='{servers.database_url}'")
        print(f"export DASI_REDIS_URL='{servers.redis_url}'")
    elif args.action == "stop":
        embedded.stop(state_dir)
    else:
        print(f"postgres: {'running' if embedded.postgres_running(state_dir) else 'stopped'}")
        print(f"redis:    {'running' if embedded.redis_running(state_dir) else 'stopped'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dasi", description="Dasi platform command line")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run all services, workers and the provider sandbox")
    up.add_argument("--host", default="127.0.0.1", help="interface the HTTP services listen on")
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply migrations to head")
    mig.add_argument("--check", action="store_true", help="fail if models and migrations disagree")
    mig.set_defaults(func=cmd_migrate)

    ws = sub.add_parser("workspace", help="workspaces").add_subparsers(dest="action", required=True)
    create = ws.add_parser("create", help="create a workspace and print its keys once")
    create.add_argument("name")
    create.add_argument("--timezone", default="Asia/Seoul")
    create.add_argument("--currency", default="KRW")
    create.set_defaults(func=cmd_workspace_create)
    ws.add_parser("list", help="list workspaces").set_defaults(func=cmd_workspace_list)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    key_create = key.add_parser("create", help="add a key to a workspace and print it once")
    key_create.add_argument("workspace_id")
    key_create.add_argument("--kind", choices=[k.value for k in KeyKind], default=KeyKind.secret.value)
    key_create.set_defaults(func=cmd_key_create)

    servers = sub.add_parser("servers", help="the embedded PostgreSQL and Redis")
    servers.add_argument("action", choices=["start", "stop", "status"])
    servers.set_defaults(func=cmd_servers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(get_settings(), args)
    return result


if __name__ == "__main__":
    sys.exit(main())
