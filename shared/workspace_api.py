"""`/v1/workspace`: the calling key's own workspace. Mounted by every service, so an integrator can
check a key against any host. There is no way to name another workspace: the key decides."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from shared.auth import SecretKeyWorkspace
from shared.clock import is_valid_timezone
from shared.dependencies import SessionDep
from shared.errors import NotFound, problem_responses
from shared.workspaces import update_workspace

router = APIRouter(prefix="/v1/workspace", tags=["workspace"])


class WorkspaceOut(BaseModel):
    id: uuid.UUID
    name: str
    timezone: str = Field(examples=["Asia/Seoul"])
    currency: str = Field(examples=["KRW"])


class WorkspaceUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200, examples=["다시 스토어"])
    timezone: str | None = Field(default=None, description="IANA timezone name", examples=["Asia/Seoul"])
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", examples=["KRW"])

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_timezone(value):
            raise ValueError(f"unknown IANA timezone {value!r}")
        return value


@router.get(
    "",
    operation_id="workspace_get",
    response_model=WorkspaceOut,
    responses=problem_responses(401),
    summary="The workspace this key belongs to",
)
async def workspace_get(workspace: SecretKeyWorkspace) -> WorkspaceOut:
    return WorkspaceOut(
        id=workspace.id, name=workspace.name, timezone=workspace.timezone, currency=workspace.currency
    )


@router.patch(
    "",
    operation_id="workspace_update",
    response_model=WorkspaceOut,
    responses=problem_responses(401, 422),
    summary="Change the workspace's name, timezone or currency",
)
async def workspace_update(
    body: WorkspaceUpdate, workspace: SecretKeyWorkspace, session: SessionDep
) -> WorkspaceOut:
    row = await update_workspace(
        session, workspace.id, body.model_dump(exclude_unset=True, exclude_none=True)
    )
    if row is None:
        raise NotFound("workspace not found")
    return WorkspaceOut(id=row.id, name=row.name, timezone=row.timezone, currency=row.currency)
