"""One alembic tree: models and migrations agree, and it goes down and up again cleanly."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.engine import make_url

from infra import migrate
from shared.testing.plugin import _create_database, _drop_database, test_servers


def test_models_and_migrations_agree(settings):
    migrate.check(settings.require_database_url())  # raises on drift


def test_downgrade_to_base_and_upgrade_again():
    servers = test_servers()
    name = f"dasi_mig_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_database(servers.servers.database_url, name))
    url = make_url(servers.servers.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        migrate.downgrade(url, "base")
        migrate.upgrade(url)
        migrate.check(url)
    finally:
        asyncio.run(_drop_database(servers.servers.database_url, name))
