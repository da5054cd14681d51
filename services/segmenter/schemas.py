"""Request and response models of the segments API, with the playbook examples."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.segmenter.definition import Definition
from services.segmenter.models import DEFAULT_REFRESH_MINUTES

NAME = Field(min_length=1, max_length=200, examples=["장바구니 이탈 고객"])
DESCRIPTION = Field(default=None, max_length=2000, examples=["장바구니에 담고 7일 안에 구매하지 않은 고객"])

CART_ABANDONERS: dict[str, Any] = {
    "include": {"type": "cart_item_count", "gte": 1},
    "exclude": [{"type": "last_purchase", "within_days": 7}],
}
PROMO_PAGE_TODAY: dict[str, Any] = {
    "include": {
        "all": [
            {
                "type": "page_viewed",
                "url": "https://dasi.shop/promo",
                "match": "prefix",
                "count": 3,
                "window": {"days": 0},
            },
            {"type": "last_purchase", "not_within_days": 7},
        ]
    }
}
LOYAL_BIG_SPENDERS: dict[str, Any] = {
    "include": {"all": [{"type": "visit_count", "gte": 10}, {"type": "purchase_total", "gte": 300000}]}
}
DORMANT_SINCE_MARCH: dict[str, Any] = {
    "include": {"all": [{"type": "last_login", "before": "2026-03-17"}, {"type": "member"}]},
    "exclude": [{"any": [{"type": "marketing_consent", "channel": "sms", "granted": False}]}],
}

PLAYBOOK = {
    "cart_abandoners": (
        "장바구니 이탈 고객",
        "장바구니에 상품이 있고 7일 안에 구매하지 않은 고객",
        CART_ABANDONERS,
    ),
    "promo_page_today": (
        "기획전 3회 이상 조회",
        "오늘 기획전 페이지를 3번 이상 보고 7일간 구매 없음",
        PROMO_PAGE_TODAY,
    ),
    "loyal_big_spenders": ("VIP 단골", "방문 10회 이상, 누적 구매 30만원 이상", LOYAL_BIG_SPENDERS),
    "dormant_since_march": (
        "3월 17일 이전 마지막 로그인",
        "3월 17일 이전에 마지막으로 로그인한 회원",
        DORMANT_SINCE_MARCH,
    ),
}


def definition_examples() -> dict[str, dict[str, Any]]:
    """`openapi_examples` for a body that is a definition."""
    return {
        key: {"summary": name, "description": text, "value": d} for key, (name, text, d) in PLAYBOOK.items()
    }


def segment_examples() -> dict[str, dict[str, Any]]:
    """`openapi_examples` for a body that creates a segment."""
    return {
        key: {"summary": name, "value": {"name": name, "description": text, "definition": d}}
        for key, (name, text, d) in PLAYBOOK.items()
    }


REFRESH_EVERY = Field(
    default=DEFAULT_REFRESH_MINUTES,
    ge=1,
    le=7 * 24 * 60,
    description="Minutes between full refreshes of the membership; null: only on demand",
    examples=[60],
)


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NAME
    description: str | None = DESCRIPTION
    definition: Definition
    refresh_every_minutes: int | None = REFRESH_EVERY


class SegmentUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, min_length=1, max_length=200, examples=["장바구니 이탈 고객 (7일)"]
    )
    description: str | None = DESCRIPTION
    definition: Definition | None = None
    refresh_every_minutes: int | None = Field(
        default=None, ge=1, le=7 * 24 * 60, description="null: only on demand", examples=[30]
    )

    @model_validator(mode="after")
    def _no_null_name_or_definition(self) -> Self:
        for name in ("name", "definition"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"`{name}` cannot be null; leave it out to keep it")
        return self


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str = NAME
    description: str | None = DESCRIPTION
    definition: Definition
    refresh_every_minutes: int | None = Field(default=None, examples=[60])
    created_at: datetime
    updated_at: datetime


class SegmentList(BaseModel):
    items: list[SegmentOut]


class EstimateOut(BaseModel):
    count: int = Field(description="Profiles in the segment now", examples=[1284])
    took_ms: float = Field(description="Time the estimate took, in milliseconds", examples=[42.5])


class PreviewProfileOut(BaseModel):
    id: uuid.UUID
    user_id: str | None = Field(examples=["member-1004"])
    traits: dict[str, Any] = Field(
        description="A few traits: name, gender, region, birthdate, member, grade (those present)",
        examples=[{"name": "김다시", "gender": "female", "region": "서울특별시"}],
    )


class PreviewOut(BaseModel):
    items: list[PreviewProfileOut]
    next_cursor: uuid.UUID | None = Field(description="Pass as `cursor` for the next page; null at the end")


class RefreshOut(BaseModel):
    entered: int = Field(description="Profiles that entered with this refresh", examples=[120])
    exited: int = Field(description="Profiles that left with this refresh", examples=[35])
    count: int = Field(description="Members after the refresh", examples=[1284])
    took_ms: float = Field(description="Time the refresh took, in milliseconds", examples=[812.4])
    refreshed_at: datetime


class MemberOut(BaseModel):
    profile_id: uuid.UUID
    user_id: str | None = Field(examples=["member-1004"])
    entered_at: datetime


class MembersOut(BaseModel):
    items: list[MemberOut]
    next_cursor: uuid.UUID | None = Field(description="Pass as `cursor` for the next page; null at the end")
    refreshed_at: datetime | None = Field(description="Last full refresh; null: never refreshed")


class ChangeOut(BaseModel):
    seq: int = Field(description="Grows with every change: pass the last one as `since` to read on")
    profile_id: uuid.UUID
    user_id: str | None = Field(examples=["member-1004"])
    change: Literal["entered", "exited"]
    at: datetime


class ChangesOut(BaseModel):
    items: list[ChangeOut]
    next_cursor: str | None = Field(
        description="Pass as `since` for the changes after these (null: none yet; ask again later with "
        "the last cursor you had)"
    )


# --- cohorts --------------------------------------------------------------------------------------


class CohortCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["VIP 초대 명단"])
    description: str | None = Field(default=None, max_length=2000)
    user_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        min_length=1, max_length=100_000, examples=[["member-1004", "member-1005"]]
    )


class CohortOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None = None
    source: Literal["csv", "json"]
    member_count: int
    created_at: datetime


class CohortList(BaseModel):
    items: list[CohortOut]


class CohortRowError(BaseModel):
    row: int = Field(description="CSV: the row number (the header is 1); JSON: the index in `user_ids`")
    column: str | None = Field(description="The column (as written in the file) or `user_ids`")
    message: str


class CohortImportOut(BaseModel):
    cohort: CohortOut
    rows: int = Field(description="Rows read (blank rows are not counted)")
    matched: int = Field(description="Rows that named a profile of the workspace")
    skipped: int = Field(description="Rows left out")
    errors: list[CohortRowError] = Field(description="Why rows were left out (at most 1000 listed)")
