"""Who is calling: API keys resolve to exactly one workspace, so a key is useless elsewhere.

- Management APIs: `Authorization: Bearer <secret key>`.
- Ingestion: the write key as the HTTP Basic username with an empty password (the Segment HTTP
  API convention, so existing SDKs work unchanged). A write key is safe to embed in a site, so it
  opens ingestion only; a secret key is never accepted there either (it must not leak into sites).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from shared.dependencies import SessionDep
from shared.errors import Unauthorized
from shared.workspaces import KeyKind, find_workspace_by_key


@dataclass(frozen=True)
class WorkspaceContext:
    """The authenticated workspace of the current request; every query is scoped by its id."""

    id: uuid.UUID
    name: str
    timezone: str
    currency: str


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
    session: SessionDep,
    _credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],  # documents the scheme
) -> WorkspaceContext:
    raw_key = _basic_username(request)
    if raw_key is None:
        raise Unauthorized(
            "Send the write key as the HTTP Basic username with an empty password", scheme="Basic"
        )
    workspace = await _resolve(session, raw_key, KeyKind.write)
    if workspace is None:
        raise Unauthorized("This key is not a valid write key", scheme="Basic")
    return workspace


SecretKeyWorkspace = Annotated[WorkspaceContext, Depends(require_secret_key)]
WriteKeyWorkspace = Annotated[WorkspaceContext, Depends(require_write_key)]
