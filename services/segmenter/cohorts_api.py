"""HTTP API of cohorts: static lists of profiles from a member CSV or a JSON list of user ids.

The CSV route reads its multipart body itself with the standard library's MIME parser (as ingest's
member import does), so the size limit holds while the upload streams in; its request schema is
declared in `openapi_extra`.
"""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response, status

from services.segmenter import cohorts
from services.segmenter.schemas import (
    CohortCreate,
    CohortImportOut,
    CohortList,
    CohortOut,
    CohortRowError,
)
from shared.auth import SecretKeyWorkspace
from shared.dependencies import ClockDep, SessionDep
from shared.errors import DasiError, FieldError, PayloadTooLarge, ValidationFailed, problem_responses

router = APIRouter(prefix="/v1/cohorts", tags=["cohorts"])

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the text fields


class UnsupportedMediaType(DasiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


def _invalid(where: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[FieldError(field=where, message=message, type="value_error")])


def _out(result: cohorts.CohortImport) -> CohortImportOut:
    return CohortImportOut(
        cohort=CohortOut.model_validate(result.cohort),
        rows=result.rows,
        matched=result.matched,
        skipped=result.skipped,
        errors=[CohortRowError(row=e.row, column=e.column, message=e.message) for e in result.errors],
    )


@router.post(
    "",
    operation_id="cohorts_create",
    response_model=CohortImportOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 409, 422),
    summary="Save a cohort from a list of user ids (ids naming no profile are reported, the rest kept)",
)
async def cohorts_create(
    body: Annotated[CohortCreate, Body()], workspace: SecretKeyWorkspace, session: SessionDep, clock: ClockDep
) -> CohortImportOut:
    result = await cohorts.create_cohort(
        session,
        workspace.id,
        clock,
        name=body.name,
        description=body.description,
        source="json",
        parsed=cohorts.parse_user_ids(body.user_ids),
    )
    return _out(result)


# -- the CSV upload ------------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    limit = cohorts.MAX_BYTES + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(f"The file is larger than {cohorts.MAX_BYTES // (1024 * 1024)} MB")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _parts(content_type: str, body: bytes) -> dict[str, MIMEPart]:
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(EmailMessage, policy=HTTP).parsebytes(head + body)
    parts: dict[str, MIMEPart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            parts.setdefault(name, part)
    return parts


def _payload(part: MIMEPart | None) -> bytes:
    payload = part.get_payload(decode=True) if part is not None else None
    return payload if isinstance(payload, bytes) else b""


def _text_field(parts: dict[str, MIMEPart], name: str, max_length: int) -> str | None:
    value = _payload(parts.get(name)).decode("utf-8", "replace").strip()
    if len(value) > max_length:
        raise _invalid(f"body.{name}", f"`{name}` may be at most {max_length} characters")
    return value or None


def _parse_csv_upload(content_type: str, body: bytes) -> tuple[str, str | None, cohorts.ParsedList]:
    parts = _parts(content_type, body)
    name = _text_field(parts, "name", 200)
    if name is None:
        raise _invalid("body.name", "a cohort `name` is required")
    if parts.get("file") is None:
        raise _invalid("body.file", "a CSV file is required in the `file` field")
    description = _text_field(parts, "description", 2000)
    encoding = _text_field(parts, "encoding", 32)
    return name, description, cohorts.parse_csv(_payload(parts["file"]), encoding)


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "name"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The member CSV"},
                        "name": {"type": "string", "maxLength": 200, "description": "The cohort's name"},
                        "description": {"type": "string", "maxLength": 2000},
                        "encoding": {
                            "type": "string",
                            "enum": list(cohorts.ENCODINGS),
                            "description": "The file's encoding; detected (UTF-8, then CP949) when absent",
                        },
                    },
                },
                "encoding": {"file": {"contentType": "text/csv"}},
            }
        },
    }
}


@router.post(
    "/import",
    operation_id="cohorts_import",
    response_model=CohortImportOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 409, 413, 415, 422),
    summary="Save a cohort from a member CSV (user id, phone or email per row; UTF-8 or CP949)",
    description=cohorts.__doc__,
    openapi_extra=UPLOAD_BODY,
)
async def cohorts_import(
    request: Request, workspace: SecretKeyWorkspace, session: SessionDep, clock: ClockDep
) -> CohortImportOut:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("Send the CSV as multipart/form-data in a field named `file`")
    body = await _read_body(request)
    name, description, parsed = await asyncio.to_thread(_parse_csv_upload, content_type, body)
    result = await cohorts.create_cohort(
        session, workspace.id, clock, name=name, description=description, source="csv", parsed=parsed
    )
    return _out(result)


# -- reading and deleting ------------------------------------------------------------------------


@router.get(
    "",
    operation_id="cohorts_list",
    response_model=CohortList,
    responses=problem_responses(401),
    summary="The workspace's cohorts, oldest first",
)
async def cohorts_list(workspace: SecretKeyWorkspace, session: SessionDep) -> CohortList:
    return CohortList(
        items=[CohortOut.model_validate(c) for c in await cohorts.list_cohorts(session, workspace.id)]
    )


@router.get(
    "/{cohort_id}",
    operation_id="cohorts_get",
    response_model=CohortOut,
    responses=problem_responses(401, 404, 422),
    summary="One cohort",
)
async def cohorts_get(cohort_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep) -> CohortOut:
    return CohortOut.model_validate(await cohorts.get_cohort(session, workspace.id, cohort_id))


@router.delete(
    "/{cohort_id}",
    operation_id="cohorts_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404, 409, 422),
    summary="Delete a cohort (409 while a segment uses it)",
)
async def cohorts_delete(
    cohort_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> Response:
    await cohorts.delete_cohort(session, workspace.id, cohort_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
