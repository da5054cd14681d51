"""Errors as RFC 9457 problem+json.

Raise a `DasiError` subclass anywhere; `install_error_handlers` renders it (and FastAPI's own
validation and HTTP errors) as `application/problem+json` with `type`, `title`, `status`, `detail`
and, for invalid input, `errors` naming each field by its path. Anything else is a bug: a 500 with
no internals in the body, logged with its traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docs.dasi.dev/problems/"


class FieldError(BaseModel):
    field: str = Field(description="Path of the offending value, dot-separated: `body.batch.3.userId`")
    message: str
    type: str = Field(description="Machine-readable reason, e.g. `missing`, `string_too_long`")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=[PROBLEM_TYPE_BASE + "validation-error"])
    title: str = Field(examples=["Invalid input"])
    status: int = Field(examples=[422])
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    # Extension members: the Segment and RudderStack SDKs read `code` and `message` from an error
    # body (RudderStack's retries even a 401 for minutes without them).
    code: str | None = Field(default=None, examples=["validation-error"], description="`type`'s last segment")
    message: str | None = Field(default=None, description="`detail`, or `title` when there is none")


class DasiError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = errors

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(DasiError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(DasiError):
    status, slug, title = 401, "unauthorized", "Missing or invalid credentials"

    def __init__(self, detail: str | None = None, *, scheme: str = "Bearer") -> None:
        super().__init__(detail)
        self.scheme = scheme

    def headers(self) -> dict[str, str]:
        realm = 'Basic realm="dasi"' if self.scheme == "Basic" else 'Bearer realm="dasi"'
        return {"WWW-Authenticate": realm}


class Forbidden(DasiError):
    status, slug, title = 403, "forbidden", "Not allowed with this key"


class NotFound(DasiError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(DasiError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(DasiError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class ValidationFailed(DasiError):
    status, slug, title = 422, "validation-error", "Invalid input"


class ServiceUnavailable(DasiError):
    status, slug, title = 503, "unavailable", "Service unavailable"


_STATUS_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or invalid credentials"),
    403: ("forbidden", "Not allowed with this key"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body = Problem(
        type=PROBLEM_TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
        code=slug,
        message=detail or title,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def field_errors_from_pydantic(
    errors: list[dict[str, Any]], prefix: tuple[Any, ...] = ()
) -> list[FieldError]:
    return [
        FieldError(
            field=field_path((*prefix, *e.get("loc", ()))), message=e.get("msg", ""), type=e.get("type", "")
        )
        for e in errors
    ]


async def _dasi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DasiError)
    return problem_response(
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        errors=exc.errors,
        headers=exc.headers(),
        instance=request.url.path,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors_from_pydantic(list(exc.errors()))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem_response(
        422, "validation-error", "Invalid input", detail, errors=errors, instance=request.url.path
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _STATUS_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(
        exc.status_code, slug, title, detail, headers=dict(exc.headers or {}), instance=request.url.path
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path)
    return problem_response(
        500, "internal-error", "Internal error", "An unexpected error occurred; it was logged."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DasiError, _dasi_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: documents its problem+json errors in the OpenAPI schema."""
    described = {422: "Invalid input; `errors` names each wrong field", 503: "A dependency is unavailable"}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        title = described.get(status) or _STATUS_TITLES.get(status, ("", "Error"))[1]
        out[status] = {"model": Problem, "description": title, "content": {PROBLEM_CONTENT_TYPE: {}}}
    return out
