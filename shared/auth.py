"""Who is calling: API keys resolve to exactly one workspace, so a key is useless elsewhere.

- Management APIs: `Authorization: Bearer <secret key>`.
- Ingestion: the write key as the HTTP Basic username with an empty password (the Segment HTTP
  API convention, so existing SDKs work unchanged). A write key is safe to embed in a site, so it
  opens ingestion only; a secret key is never accepted there either (it must not leak into sites).

Write keys are looked up on every tracking request, so each app remembers the workspace of a valid
write key for WRITE_KEY_TTL seconds (`WriteKeyCache`, on `app.state`, one per app and process).
Consequence: a revoked write key (or a changed workspace timezone) may still be honoured for up to
WRITE_KEY_TTL seconds by a process that saw it just before. Unknown keys are not remembered, so a
new key works at once. Requests that miss the cache for one key together share one lookup: when the
entry of a busy store expired, every request in flight looked it up on its own, each in a unit of
work on a pool connection of its own (in the ingest bench, up to its 16 requests in flight a
process, every 10 s: ~1% of the process's CPU by py-spy). Secret keys are not cached: revoking one
takes effect on the next request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import session_scope
from shared.dependencies import SessionDep, resources_of
from shared.errors import Unauthorized
from shared.workspaces import KeyKind, find_workspace_by_key


@dataclass(frozen=True)
class WorkspaceContext:
    """The authenticated workspace of the current request; every query is scoped by its id."""

    id: uuid.UUID
    name: str
    timezone: str
    currency: str


WRITE_KEY_TTL = 10.0  # seconds a process keeps trusting a write key it has checked
WRITE_KEY_CACHE_SIZE = 10_000


class WriteKeyCache:
    """Write key -> workspace for WRITE_KEY_TTL seconds (monotonic clock), at most `size` keys."""

    def __init__(self, ttl: float = WRITE_KEY_TTL, size: int = WRITE_KEY_CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, WorkspaceContext]] = {}
        self._lookups: dict[str, asyncio.Future[WorkspaceContext | None]] = {}

    async def resolve(
        self, raw_key: str, look_up: Callable[[], Awaitable[WorkspaceContext | None]]
    ) -> WorkspaceContext | None:
        """The key's workspace from the cache, else from `look_up`, run once for all the requests
        that miss on this key meanwhile (a valid key's result is remembered)."""
        workspace = self.get(raw_key)
        if workspace is not None:
            return workspace
        lookup = self._lookups.get(raw_key)
        if lookup is None:
            lookup = self._lookups[raw_key] = asyncio.ensure_future(self._look_up(raw_key, look_up))
        return await asyncio.shield(lookup)  # a request that goes away leaves the lookup to the others

    async def _look_up(
        self, raw_key: str, look_up: Callable[[], Awaitable[WorkspaceContext | None]]
    ) -> WorkspaceContext | None:
        try:
            workspace = await look_up()
            if workspace is not None:
                self.put(raw_key, workspace)
            return workspace
        finally:
            del self._lookups[raw_key]

    def get(self, raw_key: str) -> WorkspaceContext | None:
        entry = self._entries.get(raw_key)
        if entry is None:
            return None
        expires, workspace = entry
        if time.monotonic() >= expires:
            del self._entries[raw_key]
            return None
        return workspace

    def put(self, raw_key: str, workspace: WorkspaceContext) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()  # crude, and only under a flood of distinct valid keys
        self._entries[raw_key] = (time.monotonic() + self.ttl, workspace)

    def clear(self) -> None:
        """Forget every key now (e.g. a test or an admin action that must see a revocation at once)."""
        self._entries.clear()


def write_key_cache(request: Request) -> WriteKeyCache:
    """The app's write-key cache, made on first use."""
    state = request.app.state
    cache: WriteKeyCache | None = getattr(state, "write_key_cache", None)
    if cache is None:
        cache = state.write_key_cache = WriteKeyCache()
    return cache


_bearer = HTTPBearer(auto_error=False, description="A secret key of the workspace: `dasi_sk_...`")
_basic = HTTPBasic(auto_error=False, description="The workspace's write key as username, empty password")


async def _resolve(session: AsyncSession, raw_key: str, kind: KeyKind) -> WorkspaceContext | None:
    workspace = await find_workspace_by_key(session, raw_key, kind)
    if workspace is None:
        return None
    structlog.contextvars.bind_contextvars(workspace_id=str(workspace.id))
    return WorkspaceContext(workspace.id, workspace.name, workspace.timezone, workspace.currency)


async def require_secret_key(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> WorkspaceContext:
    if credentials is None:
        raise Unauthorized("Send a secret key as `Authorization: Bearer dasi_sk_...`")
    workspace = await _resolve(session, credentials.credentials, KeyKind.secret)
    if workspace is None:
        raise Unauthorized("This key is not a valid secret key (write keys do not open management APIs)")
    return workspace


def _basic_username(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


async def require_write_key(
    request: Request,
    _credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],  # documents the scheme
) -> WorkspaceContext:
    """The write key's workspace. A key not in the cache is looked up in a unit of work of its own,
    closed at once: a tracking request then holds no database connection while it waits for its
    messages to be stored (services/ingest/group_commit.py takes its own)."""
    raw_key = _basic_username(request)
    if raw_key is None:
        raise Unauthorized(
            "Send the write key as the HTTP Basic username with an empty password", scheme="Basic"
        )
    sessionmaker = resources_of(request).sessionmaker

    async def look_up() -> WorkspaceContext | None:
        async with session_scope(sessionmaker) as session:
            return await _resolve(session, raw_key, KeyKind.write)

    workspace = await write_key_cache(request).resolve(raw_key, look_up)
    if workspace is None:
        raise Unauthorized("This key is not a valid write key", scheme="Basic")
    structlog.contextvars.bind_contextvars(workspace_id=str(workspace.id))
    return workspace


SecretKeyWorkspace = Annotated[WorkspaceContext, Depends(require_secret_key)]
WriteKeyWorkspace = Annotated[WorkspaceContext, Depends(require_write_key)]
