"""Reading tracking bodies: size limits (Segment's: 32 KB a call, 500 KB a batch), gzip, JSON, and
message-by-message validation so one bad message in a batch costs only itself."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, cast

import msgspec
import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from services.ingest.drafts import ContractMessage, Message
from services.ingest.messages import FAST_BATCH, needs_contract
from services.ingest.schemas import (
    AliasMessage,
    GroupMessage,
    IdentifyMessage,
    PageMessage,
    ScreenMessage,
    TrackMessage,
)
from shared.errors import (
    BadRequest,
    DasiError,
    FieldError,
    PayloadTooLarge,
    ValidationFailed,
    field_errors_from_pydantic,
)

MESSAGE_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024

MESSAGE_TYPES: dict[str, type[ContractMessage]] = {
    "track": TrackMessage,
    "identify": IdentifyMessage,
    "page": PageMessage,
    "screen": ScreenMessage,
    "group": GroupMessage,
    "alias": AliasMessage,
}


class UnsupportedEncoding(DasiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported content encoding"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than {limit // 1024} KB (after gunzip)")


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"The body is not valid gzip: {exc}") from exc
    if len(body) > limit:
        raise _too_large(limit)
    if not inflater.eof:
        raise BadRequest("The gzip body is truncated")
    return body


# An escaped NUL (\u0000) that is not itself an escaped backslash followed by "u0000"
_ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _without_nul(body: bytes) -> bytes:
    """PostgreSQL text and jsonb cannot hold NUL characters: they become U+FFFD instead of
    costing the whole message (or the batch) a 500."""
    if b"\\u0000" not in body:
        return body
    return _ESCAPED_NUL.sub(rb"\1\\ufffd", body)


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, gunzipped when `Content-Encoding: gzip`; 413 past `limit` bytes."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(bytes(raw), limit)
    elif encoding in ("identity", ""):
        body = bytes(raw)
    else:
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported; send gzip or none")
    try:
        return orjson.loads(_without_nul(body))  # JSONDecodeError is a ValueError
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from exc


def _details(exc: ValidationError) -> list[dict[str, Any]]:
    return [dict(error) for error in exc.errors()]


def _missing_id(path: tuple[Any, ...]) -> FieldError:
    return FieldError(
        field=".".join(str(p) for p in (*path, "userId")),
        message="userId or anonymousId is required",
        type="missing",
    )


def validate_message(
    data: Any, model: type[ContractMessage] | None, path: tuple[Any, ...]
) -> ContractMessage | list[FieldError]:
    """One message, checked on its own: the model, or the errors naming fields under `path`.
    With `model` None the message's own `type` picks the model (batch)."""
    if not isinstance(data, dict):
        return [FieldError(field=".".join(map(str, path)), message="must be an object", type="dict_type")]
    if model is None:
        model = MESSAGE_TYPES.get(data.get("type"))  # type: ignore[arg-type]
        if model is None:
            allowed = ", ".join(MESSAGE_TYPES)
            field_path = ".".join(str(p) for p in (*path, "type"))
            return [
                FieldError(field=field_path, message=f"must be one of: {allowed}", type="union_tag_invalid")
            ]
    try:
        message = model.model_validate(data)
    except ValidationError as exc:
        return field_errors_from_pydantic(_details(exc), prefix=path)
    if not (message.user_id or message.anonymous_id):
        return [_missing_id(path)]
    return message


class _BatchEnvelope(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    batch: list[Any]
    sent_at: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)


@dataclass
class ParsedBatch:
    messages: list[Message] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    sent_at: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict)


def _encoded_size(data: Any) -> int:
    return len(orjson.dumps(data))  # compact UTF-8, like the body an SDK sends


def _all_valid(batch: list[Any]) -> list[Message] | None:
    """The common case in one pass (services/ingest/messages.py): every message fits, is valid and
    names a shopper, as the contract would read it. None when any does not; then each message is
    checked on its own against the contract, for the errors by index."""
    # when the whole batch fits in one message's limit, so does each message
    if _encoded_size(batch) > MESSAGE_LIMIT and any(_encoded_size(i) > MESSAGE_LIMIT for i in batch):
        return None
    try:
        messages = msgspec.convert(batch, FAST_BATCH)
    except msgspec.ValidationError:
        return None
    for message in messages:
        if needs_contract(message):
            return None
    return cast("list[Message]", messages)  # a list of one kind of the union


def parse_batch(body: Any) -> ParsedBatch:
    """Split a batch into valid messages and rejected indexes with the reasons."""
    try:
        envelope = _BatchEnvelope.model_validate(body)
    except ValidationError as exc:
        raise_invalid(field_errors_from_pydantic(_details(exc), prefix=("body",)))
    parsed = ParsedBatch(sent_at=envelope.sent_at, context=envelope.context)
    valid = _all_valid(envelope.batch)
    if valid is not None:
        parsed.messages = valid
        return parsed
    for index, item in enumerate(envelope.batch):
        path = ("body", "batch", index)
        if _encoded_size(item) > MESSAGE_LIMIT:
            result: Message | list[FieldError] = [
                FieldError(
                    field=".".join(map(str, path)),
                    message=f"a message may be at most {MESSAGE_LIMIT // 1024} KB",
                    type="too_large",
                )
            ]
        else:
            result = validate_message(item, None, path)
        if isinstance(result, list):
            parsed.rejected.append(index)
            parsed.errors += result
        else:
            parsed.messages.append(result)
    return parsed


def raise_invalid(errors: list[FieldError]) -> NoReturn:
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    raise ValidationFailed(detail, errors=errors)
