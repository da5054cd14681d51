"""Request and response models of the segments API, with the playbook examples."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.segmenter.definition import Definition

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


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NAME
    description: str | None = DESCRIPTION
    definition: Definition


class SegmentUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, min_length=1, max_length=200, examples=["장바구니 이탈 고객 (7일)"]
    )
    description: str | None = DESCRIPTION
    definition: Definition | None = None

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
