"""The profile management API (secret key): import a store's member CSV, read a profile with its
aggregates, find one by userId or anonymousId, and page through its events. Every query is scoped
by the key's workspace: another workspace's profile is a 404.

The import route reads its multipart body itself, with the standard library's MIME parser, so the
size limit holds while the upload streams in; its request schema is declared in `openapi_extra`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.ingest import imports, profile_queries
from services.ingest.models import CartItem, Event, HeldCoupon, ProductView, ProfileAggregates
from services.ingest.profile_queries import EventCursor, ProfileDetails
from shared.auth import SecretKeyWorkspace
from shared.dependencies import ResourcesDep, SessionDep
from shared.errors import (
    DasiError,
    FieldError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    problem_responses,
)

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the `encoding` field
EVENTS_LIMIT_MAX = 200


class UnsupportedMediaType(DasiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


# -- response models -----------------------------------------------------------------------------


class IdentityOut(BaseModel):
    kind: Literal["user_id", "anonymous_id"]
    value: str = Field(examples=["user-1004"])


class CartItemOut(BaseModel):
    product_id: str = Field(examples=["P1"])
    name: str | None = Field(examples=["수분크림"])
    quantity: int = Field(examples=[2])
    price: float | None = Field(examples=[25000])
    added_at: datetime


class CartOut(BaseModel):
    items: list[CartItemOut]
    item_count: int = Field(description="Units in the cart, all products together")
    total: float = Field(description="Sum of quantity × price, in the workspace currency")
    last_added_at: datetime | None


class ProductViewedOut(BaseModel):
    product_id: str = Field(examples=["P1"])
    name: str | None = Field(examples=["수분크림"])
    category: str | None = Field(examples=["스킨케어"])
    brand: str | None = Field(examples=["다시랩"])
    view_count: int
    first_viewed_at: datetime
    last_viewed_at: datetime


class CouponOut(BaseModel):
    coupon_id: str = Field(examples=["WELCOME10"])
    name: str | None = Field(examples=["신규회원 10% 할인"])
    expires_at: datetime | None
    issued_at: datetime


class AggregatesOut(BaseModel):
    """What segments ask about a shopper, kept current with their events."""

    visit_count: int = 0
    first_visit_at: datetime | None = None
    last_visit_at: datetime | None = Field(default=None, description="Start of the latest visit")
    last_seen_at: datetime | None = Field(default=None, description="Latest activity")
    session_page_views: int = Field(default=0, description="Page views in the latest visit")
    last_login_at: datetime | None = None
    purchase_count: int = 0
    purchase_total: float = Field(default=0, description="Refunds subtracted, in the workspace currency")
    last_purchase_at: datetime | None = None
    cart: CartOut
    products_viewed: list[ProductViewedOut] = Field(
        description=f"Most recently viewed first, at most {profile_queries.PRODUCTS_VIEWED_LIMIT}"
    )
    coupons: list[CouponOut] = Field(description="Coupons issued to the shopper, newest first")


EXAMPLE_PROFILE: dict[str, Any] = {
    "id": "5f0c1d7e-2b1a-4c7e-9d3f-8a6b4e2c1f00",
    "user_id": "user-1004",
    "identities": [
        {"kind": "user_id", "value": "user-1004"},
        {"kind": "anonymous_id", "value": "anon-7f3a"},
    ],
    "traits": {
        "name": "김민지",
        "phone": "01012345678",
        "email": "minji@example.com",
        "region": "서울",
        "consents": {"sms": True, "email": False, "kakao": True, "push": True, "night": False},
        "consents_at": "2026-11-23T10:00:00+09:00",
    },
    "created_at": "2026-11-20T10:00:00+09:00",
    "updated_at": "2026-11-23T10:00:00+09:00",
    "aggregates": {
        "visit_count": 4,
        "first_visit_at": "2026-11-20T10:00:00+09:00",
        "last_visit_at": "2026-11-21T00:05:00+09:00",
        "last_seen_at": "2026-11-21T00:10:00+09:00",
        "session_page_views": 2,
        "last_login_at": "2026-11-21T00:06:00+09:00",
        "purchase_count": 1,
        "purchase_total": 40000,
        "last_purchase_at": "2026-11-21T00:10:00+09:00",
        "cart": {
            "items": [
                {
                    "product_id": "P2",
                    "name": "선크림",
                    "quantity": 1,
                    "price": 15000,
                    "added_at": "2026-11-21T09:00:00+09:00",
                }
            ],
            "item_count": 1,
            "total": 15000,
            "last_added_at": "2026-11-21T09:00:00+09:00",
        },
        "products_viewed": [
            {
                "product_id": "P1",
                "name": "수분크림",
                "category": "스킨케어",
                "brand": "다시랩",
                "view_count": 3,
                "first_viewed_at": "2026-11-20T10:05:00+09:00",
                "last_viewed_at": "2026-11-21T00:07:00+09:00",
            }
        ],
        "coupons": [
            {
                "coupon_id": "WELCOME10",
                "name": "신규회원 10% 할인",
                "expires_at": "2026-12-31T23:59:59+09:00",
                "issued_at": "2026-11-20T10:01:00+09:00",
            }
        ],
    },
}


class ProfileOut(BaseModel):
    """One shopper of the workspace, with what their events add up to."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_PROFILE]})

    id: uuid.UUID
    user_id: str | None = Field(description="The store's id for the shopper, once known")
    identities: list[IdentityOut]
    traits: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    aggregates: AggregatesOut


class EventOut(BaseModel):
    id: uuid.UUID
    message_id: str
    type: Literal["track", "identify", "page", "screen", "alias", "group"]
    name: str | None = Field(examples=["Product Viewed"])
    properties: dict[str, Any] = Field(examples=[{"product_id": "P1", "name": "수분크림", "price": 25000}])
    context: dict[str, Any]
    occurred_at: datetime
    received_at: datetime


class EventsPage(BaseModel):
    events: list[EventOut] = Field(description="Newest first")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null when there is none"
    )


class ImportRowError(BaseModel):
    row: int = Field(description="Row number as a spreadsheet shows it: the header is row 1", examples=[3])
    column: str | None = Field(description="The column's header as written in the file", examples=["휴대폰"])
    message: str = Field(examples=["not a phone number: expected 9 to 11 digits starting with 0"])


class ImportResultOut(BaseModel):
    """What became of each row. Bad rows are left out and listed; the good rows beside them are kept."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": 3,
                    "imported": 2,
                    "duplicates": 0,
                    "skipped": 1,
                    "errors": [
                        {
                            "row": 3,
                            "column": "휴대폰",
                            "message": "not a phone number: expected 9 to 11 digits starting with 0, "
                            "e.g. 010-1234-5678",
                        }
                    ],
                }
            ]
        }
    )

    rows: int = Field(description="Data rows read (blank rows are not counted)")
    imported: int = Field(description="Rows recorded now")
    duplicates: int = Field(description="Rows already recorded by an earlier upload of the same file")
    skipped: int = Field(description="Rows left out because of an error")
    errors: list[ImportRowError] = Field(
        description=f"Why rows were left out; at most {imports.MAX_LISTED_ERRORS} are listed"
    )


# -- mapping rows to responses -------------------------------------------------------------------


def _money(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _cart(aggregates: ProfileAggregates | None, items: list[CartItem]) -> CartOut:
    return CartOut(
        items=[
            CartItemOut(
                product_id=i.product_id,
                name=i.name,
                quantity=i.quantity,
                price=float(i.price) if i.price is not None else None,
                added_at=i.added_at,
            )
            for i in items
        ],
        item_count=aggregates.cart_item_count if aggregates else 0,
        total=_money(aggregates.cart_total) if aggregates else 0.0,
        last_added_at=aggregates.cart_last_added_at if aggregates else None,
    )


def _viewed(view: ProductView) -> ProductViewedOut:
    return ProductViewedOut(
        product_id=view.product_id,
        name=view.name,
        category=view.category,
        brand=view.brand,
        view_count=view.view_count,
        first_viewed_at=view.first_viewed_at,
        last_viewed_at=view.last_viewed_at,
    )


def _coupon(coupon: HeldCoupon) -> CouponOut:
    return CouponOut(
        coupon_id=coupon.coupon_id, name=coupon.name, expires_at=coupon.expires_at, issued_at=coupon.issued_at
    )


def _aggregates(details: ProfileDetails) -> AggregatesOut:
    a = details.aggregates
    counters: dict[str, Any] = {}
    if a is not None:
        counters = {
            "visit_count": a.visit_count,
            "first_visit_at": a.first_visit_at,
            "last_visit_at": a.last_visit_at,
            "last_seen_at": a.last_seen_at,
            "session_page_views": a.session_page_views,
            "last_login_at": a.last_login_at,
            "purchase_count": a.purchase_count,
            "purchase_total": _money(a.purchase_total),
            "last_purchase_at": a.last_purchase_at,
        }
    return AggregatesOut(
        **counters,
        cart=_cart(a, details.cart),
        products_viewed=[_viewed(v) for v in details.products_viewed],
        coupons=[_coupon(c) for c in details.coupons],
    )


def _profile(details: ProfileDetails) -> ProfileOut:
    profile = details.profile
    return ProfileOut(
        id=profile.id,
        user_id=profile.user_id,
        identities=[IdentityOut(kind=i.kind, value=i.value) for i in details.identities],
        traits=profile.traits,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
        aggregates=_aggregates(details),
    )


def _event(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        message_id=event.message_id,
        type=event.type,
        name=event.name,
        properties=event.properties,
        context=event.context,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
    )


# -- event cursors -------------------------------------------------------------------------------


def encode_cursor(event: Event) -> str:
    raw = f"{event.occurred_at.isoformat()}|{event.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> EventCursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, event_id = raw.partition("|")
        return EventCursor(datetime.fromisoformat(at), uuid.UUID(event_id))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid("query.cursor", "not a cursor from `next_cursor`") from exc


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", errors=[FieldError(field=field, message=message, type="value_error")]
    )


def _before(before: datetime | None, cursor: str | None) -> EventCursor | None:
    if before is not None and cursor is not None:
        raise _invalid("query.cursor", "send either `before` or `cursor`, not both")
    if cursor is not None:
        return decode_cursor(cursor)
    if before is not None:
        if before.tzinfo is None:
            raise _invalid("query.before", "give a time with its offset, e.g. 2026-11-23T10:00:00+09:00")
        return EventCursor(before)
    return None


# -- reading the upload --------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    content: bytes
    filename: str | None
    encoding: str | None


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than {imports.MAX_BYTES // (1024 * 1024)} MB")


async def _read_body(request: Request) -> bytes:
    """The body, refused as soon as it is past the limit (before it is all read)."""
    limit = imports.MAX_BYTES + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large()
    return bytes(body)


def _parts(content_type: str, body: bytes) -> dict[str, MIMEPart]:
    """The form's parts by field name (the first of each name)."""
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(EmailMessage, policy=HTTP).parsebytes(head + body)
    parts: dict[str, MIMEPart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            parts.setdefault(name, part)
    return parts


def _payload(part: MIMEPart) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def parse_upload(content_type: str, body: bytes) -> Upload:
    """The `file` and `encoding` fields of a multipart/form-data body."""
    parts = _parts(content_type, body)
    file = parts.get("file")
    if file is None:
        raise _invalid("body.file", "a CSV file is required in the `file` field")
    content = _payload(file)
    if len(content) > imports.MAX_BYTES:
        raise _too_large()
    encoding = parts.get("encoding")
    named = _payload(encoding).decode("utf-8", "replace").strip() if encoding is not None else ""
    return Upload(content, file.get_filename(), named or None)


async def read_upload(request: Request) -> Upload:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("Send the CSV as multipart/form-data in a field named `file`")
    body = await _read_body(request)
    return await asyncio.to_thread(parse_upload, content_type, body)


# -- routes --------------------------------------------------------------------------------------


def _mapping_table() -> str:
    rows = [
        f"| `{field}` | {', '.join(f'`{name}`' for name in names)} |"
        for field, names in imports.COLUMNS.items()
    ]
    return "\n".join(["| field | headers that mean it |", "|---|---|", *rows])


IMPORT_DESCRIPTION = f"""
Upload a store's member export (CSV, at most {imports.MAX_BYTES // (1024 * 1024)} MB) as
`multipart/form-data`: the file in `file`, and optionally `encoding` (`utf-8` or `cp949` / `euc-kr`;
without it UTF-8, with or without BOM, is tried and then CP949, as Korean Excel saves).

Each row becomes an identify of its `user_id` with the other columns as traits, recorded like a
tracked identify: profiles, identities, trait merge and consents. Headers are matched ignoring
case, spaces, `_` and `-`. A known field is stored as the trait of its name (`phone`, `region`,
...), the five consent columns together as `consents`; a column not in the table becomes a custom
trait under its header. A `user_id` column is required; the file is read comma-separated.

{_mapping_table()}

Values: phone numbers are stored as digits (`010-1234-5678` → `01012345678`); birthdates as
`YYYY-MM-DD` (`1995.03.07` and `19950307` work too); `signed_up_at` as ISO 8601, in the workspace
timezone when the file gives none; consents accept `Y`/`N`, `예`/`아니오`, `동의`/`거부`,
`true`/`false`, `1`/`0` and are stored as
`"consents": {{"sms": true, "email": false, ...}}` with `"consents_at"` the import time.
Empty cells leave a trait as it was.

A row with a missing `user_id`, a malformed phone, email or date, an unknown consent value or the
wrong number of columns is left out and listed in `errors` with its row number and column; the
good rows are kept. Uploading the same file again records nothing twice (`duplicates`).

Rows are recorded in chunks of {imports.CHUNK_ROWS}, each committed on its own. If an upload fails
part way, send the same file again: the rows already recorded count as `duplicates`.
"""

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The member CSV"},
                        "encoding": {
                            "type": "string",
                            "enum": list(imports.ENCODINGS),
                            "description": "The file's encoding; detected when absent",
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
    operation_id="profiles_import",
    summary="Import members from a CSV export",
    description=IMPORT_DESCRIPTION,
    response_model=ImportResultOut,
    responses=problem_responses(401, 413, 415, 422),
    openapi_extra=UPLOAD_BODY,
)
async def profiles_import(
    request: Request, workspace: SecretKeyWorkspace, resources: ResourcesDep
) -> ImportResultOut:
    upload = await read_upload(request)
    now = resources.clock.now()
    parsed = await asyncio.to_thread(
        imports.parse_file, upload.content, upload.encoding, timezone=workspace.timezone, now=now
    )
    result = await imports.record_members(
        resources.sessionmaker,
        workspace.id,
        parsed,
        timezone=workspace.timezone,
        received_at=now,
    )
    return ImportResultOut(
        rows=result.rows,
        imported=result.imported,
        duplicates=result.duplicates,
        skipped=result.skipped,
        errors=[ImportRowError(row=e.row, column=e.column, message=e.message) for e in result.errors],
    )


async def _details(session: SessionDep, workspace_id: uuid.UUID, profile_id: uuid.UUID) -> ProfileDetails:
    details = await profile_queries.profile_details(session, workspace_id, profile_id)
    if details is None:
        raise NotFound(f"No profile {profile_id} in this workspace")
    return details


@router.get(
    "",
    operation_id="profiles_find",
    summary="Find the profile of a userId or an anonymousId",
    description="Give exactly one of `user_id` and `anonymous_id`.",
    response_model=ProfileOut,
    responses=problem_responses(401, 404, 422),
)
async def profiles_find(
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    user_id: Annotated[str | None, Query(max_length=255, examples=["user-1004"])] = None,
    anonymous_id: Annotated[str | None, Query(max_length=255, examples=["anon-7f3a"])] = None,
) -> ProfileOut:
    if user_id is not None and anonymous_id is None:
        kind, value = "user_id", user_id
    elif anonymous_id is not None and user_id is None:
        kind, value = "anonymous_id", anonymous_id
    else:
        raise _invalid("query.user_id", "give exactly one of user_id and anonymous_id")
    profile_id = await profile_queries.find_profile_id(session, workspace.id, kind, value)
    if profile_id is None:
        raise NotFound(f"No profile with {kind} {value!r} in this workspace")
    return _profile(await _details(session, workspace.id, profile_id))


@router.get(
    "/{profile_id}",
    operation_id="profiles_get",
    summary="A profile: identities, traits and aggregates",
    response_model=ProfileOut,
    responses=problem_responses(401, 404, 422),
)
async def profiles_get(
    profile_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> ProfileOut:
    return _profile(await _details(session, workspace.id, profile_id))


@router.get(
    "/{profile_id}/events",
    operation_id="profiles_events",
    summary="A profile's events, newest first",
    description=(
        "Page with `next_cursor`: pass it as `cursor` to get the next, older page. `before` starts "
        "from a point in time instead (events strictly before it)."
    ),
    response_model=EventsPage,
    responses=problem_responses(401, 404, 422),
)
async def profiles_events(
    profile_id: uuid.UUID,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=EVENTS_LIMIT_MAX)] = 50,
    before: Annotated[
        datetime | None, Query(description="Only events before this time (ISO 8601 with offset)")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> EventsPage:
    start = _before(before, cursor)
    if await profile_queries.find_profile(session, workspace.id, profile_id) is None:
        raise NotFound(f"No profile {profile_id} in this workspace")
    events = await profile_queries.events_of(session, workspace.id, profile_id, before=start, limit=limit + 1)
    page = events[:limit]
    next_cursor = encode_cursor(page[-1]) if len(events) > limit else None
    return EventsPage(events=[_event(e) for e in page], next_cursor=next_cursor)
