"""Validation errors of segment definitions with the paths a person wrote.

Pydantic puts the tag of each union it resolves into an error's path
(`body.include.all.all.2.condition.last_visit.within_days`); the JSON has no such steps. This
takes them out again (`body.include.all.2.within_days`) by walking the request body: a step is a
tag when it is one of the union tags and the JSON at that point has no such key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.segmenter.definition import UNION_TAGS
from shared.errors import field_errors_from_pydantic, problem_response


def _has_step(current: Any, part: Any) -> bool:
    if isinstance(current, dict):
        return part in current
    return isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)


def _parts_of_loc(loc: Sequence[Any], body: Any) -> list[Any]:
    if not loc or loc[0] != "body":
        return list(loc)
    kept: list[Any] = ["body"]
    current = body
    for part in loc[1:]:
        if _has_step(current, part):
            current = current[part]
        elif part in UNION_TAGS:
            continue
        else:
            current = None
        kept.append(part)
    return kept


_TYPE_ERRORS = ("union_tag_invalid", "union_tag_not_found")  # the condition's `type` is what is wrong


def written_paths(errors: Sequence[dict[str, Any]], body: Any) -> list[dict[str, Any]]:
    out = []
    for error in errors:
        loc = _parts_of_loc(error.get("loc", ()), body)
        if error.get("type") in _TYPE_ERRORS:
            loc.append("type")
        out.append({**error, "loc": tuple(loc)})
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors_from_pydantic(written_paths(list(exc.errors()), exc.body))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem_response(
        422, "validation-error", "Invalid input", detail, errors=errors, instance=request.url.path
    )


def install_definition_paths(app: FastAPI) -> None:
    """Render request validation errors as shared.errors does, with the paths as written."""
    app.add_exception_handler(RequestValidationError, _validation_error)
