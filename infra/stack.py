"""Where the servers come from: DASI_DATABASE_URL / DASI_REDIS_URL when set, else the embedded default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from infra import embedded
from shared.settings import Settings


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


def start_servers(settings: Settings) -> Servers:
    """Start whichever embedded server is needed (reusing one already running from the state dir)."""
    state_dir = settings.state_dir.resolve()
    database_url = settings.database_url or embedded.start_postgres(state_dir)
    redis_url = settings.redis_url or embedded.start_redis(state_dir)
    return Servers(database_url, redis_url, settings.database_url is None, settings.redis_url is None)


def stop_servers(settings: Settings, servers: Servers) -> None:
    state_dir = settings.state_dir.resolve()
    if servers.embedded_redis:
        embedded.stop_redis(state_dir)
    if servers.embedded_postgres:
        embedded.stop_postgres(state_dir)


def with_urls(settings: Settings, servers: Servers) -> Settings:
    return settings.model_copy(update={"database_url": servers.database_url, "redis_url": servers.redis_url})


@contextmanager
def servers_for_command(settings: Settings) -> Iterator[Settings]:
    """For one-shot commands: use the servers, and stop the embedded ones only if this started them."""
    state_dir = settings.state_dir.resolve()
    was_running = embedded.postgres_running(state_dir), embedded.redis_running(state_dir)
    servers = start_servers(settings)
    try:
        yield with_urls(settings, servers)
    finally:
        if servers.embedded_redis and not was_running[1]:
            embedded.stop_redis(state_dir)
        if servers.embedded_postgres and not was_running[0]:
            embedded.stop_postgres(state_dir)
