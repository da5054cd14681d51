"""`dasi workspace create` prints working keys once; `dasi migrate` against configured servers."""

from __future__ import annotations

import re

from sqlalchemy import select

from infra.cli import main
from services.segmenter.main import create_app
from shared.db import session_scope
from shared.testing.fixtures import serve
from shared.workspaces import Workspace


async def test_workspace_create_prints_keys_that_work(capsys, db, settings):
    # run the command in a thread: it owns its own event loop, as it does from a shell
    import asyncio

    code = await asyncio.to_thread(main, ["workspace", "create", "다시 스토어", "--timezone", "Asia/Seoul"])
    assert code == 0
    output = capsys.readouterr().out
    secret = re.search(r"secret key (dasi_sk_\S+)", output).group(1)
    write = re.search(r"write key\s+(dasi_wk_\S+)", output).group(1)
    async with session_scope(db) as session:
        (workspace,) = (await session.execute(select(Workspace))).scalars().all()
    assert workspace.name == "다시 스토어" and write != secret
    async with serve(create_app(settings)) as client:
        response = await client.get("/v1/workspace", headers={"Authorization": f"Bearer {secret}"})
    assert response.json()["id"] == str(workspace.id)


def test_migrate_uses_the_configured_servers(capsys):
    assert main(["migrate"]) == 0
    assert main(["migrate", "--check"]) == 0
    assert "models and migrations agree" in capsys.readouterr().out
