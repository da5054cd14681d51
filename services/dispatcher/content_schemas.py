"""Request and response models of the templates, sender-profiles and suppressions APIs."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TemplateChannel = Literal["alimtalk", "friendtalk", "brand_message", "sms", "push", "email"]
ReviewState = Literal["registered", "under_review", "approved", "rejected"]
SuppressionChannel = Literal["all", "sms", "kakao", "push", "email"]
SuppressionSource = Literal["080", "email_one_click", "provider", "manual"]

CART_REMINDER = {
    "name": "장바구니 리마인드 (광고)",
    "channel": "sms",
    "is_ad": True,
    "body": "{{ profile.name }}님, 장바구니에 담아두신 {{ cart.product_name }}이(가) 기다리고 있어요.\n"
    "{{ coupon.name }} 쿠폰은 {{ coupon.expires_at | date_ko }}까지!\n{{ link }}",
    "variables": {"profile.name": "고객", "coupon.name": "장바구니"},
}
ORDER_ALIMTALK = {
    "name": "쿠폰 만료 안내",
    "channel": "alimtalk",
    "is_ad": False,
    "alimtalk_template_code": "COUPON_EXPIRY_01",
    "body": "{{ profile.name }}님, 보유하신 {{ coupon.name }} 쿠폰이 "
    "{{ coupon.expires_at | date_ko: 'full' }}에 만료됩니다.",
    "fallback_body": "[{{ store.name }}] {{ profile.name }}님, {{ coupon.name }} 쿠폰이 곧 만료됩니다.",
    "buttons": [{"type": "WL", "name": "쿠폰함 보기", "linkMo": "{{ link }}"}],
}
FRIENDTALK_SALE = {
    "name": "주말 특가 친구톡",
    "channel": "friendtalk",
    "is_ad": True,
    "body": "{{ profile.name }}님만을 위한 주말 특가! 할인 코드 {{ coupon.discount_code }}",
    "image_url": "https://dasi.shop/img/weekend.jpg",
    "buttons": [{"type": "WL", "name": "특가 보러가기", "linkMo": "{{ link }}"}],
}


def template_examples() -> dict[str, dict[str, Any]]:
    return {
        "sms_ad": {"summary": "광고 문자 (장바구니)", "value": CART_REMINDER},
        "alimtalk": {"summary": "알림톡 (쿠폰 만료)", "value": ORDER_ALIMTALK},
        "friendtalk": {"summary": "친구톡 (주말 특가)", "value": FRIENDTALK_SALE},
    }


class Button(BaseModel):
    """A Kakao button; text fields may use template variables (`{{ link }}`)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["WL", "AL", "BK", "MD", "BF", "DS", "AC", "BC", "BT"] = Field(examples=["WL"])
    name: str = Field(min_length=1, max_length=28, examples=["쿠폰함 보기"])
    linkMo: str | None = Field(default=None, max_length=1000, examples=["{{ link }}"])
    linkPc: str | None = Field(default=None, max_length=1000)
    schemeAndroid: str | None = Field(default=None, max_length=1000)
    schemeIos: str | None = Field(default=None, max_length=1000)


class TemplateBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=20_000, description="Liquid; see the variables list")
    subject: str | None = Field(
        default=None, max_length=200, description="LMS/MMS subject, email subject, push title"
    )
    fallback_body: str | None = Field(
        default=None, max_length=20_000, description="Kakao templates: the SMS text when Kakao cannot deliver"
    )
    image_url: str | None = Field(default=None, max_length=2000)
    buttons: list[Button] = Field(default_factory=list, max_length=5)
    variables: dict[str, str] = Field(
        default_factory=dict,
        description="Defaults for missing values, by variable path",
        examples=[{"profile.name": "고객"}],
    )
    alimtalk_template_code: str | None = Field(default=None, max_length=64, examples=["COUPON_EXPIRY_01"])


class TemplateCreate(TemplateBase):
    name: str = Field(min_length=1, max_length=200, examples=["장바구니 리마인드 (광고)"])
    channel: TemplateChannel = Field(description="`sms` is 문자: SMS, LMS or MMS chosen by size")
    is_ad: bool = Field(description="Advertising: consent, night and ad-form rules apply")


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    is_ad: bool | None = None
    body: str | None = Field(default=None, min_length=1, max_length=20_000)
    subject: str | None = Field(default=None, max_length=200)
    fallback_body: str | None = Field(default=None, max_length=20_000)
    image_url: str | None = Field(default=None, max_length=2000)
    buttons: list[Button] | None = Field(default=None, max_length=5)
    variables: dict[str, str] | None = None
    alimtalk_template_code: str | None = Field(default=None, max_length=64)


class ReviewEntry(BaseModel):
    state: ReviewState
    at: datetime
    reason: str | None = None


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    channel: TemplateChannel
    is_ad: bool
    body: str
    subject: str | None = None
    fallback_body: str | None = None
    image_url: str | None = None
    buttons: list[dict[str, Any]]
    variables: dict[str, str]
    alimtalk_template_code: str | None = None
    review_state: ReviewState | None = Field(default=None, description="Alimtalk only: Kakao's review (검수)")
    review_reason: str | None = None
    review_history: list[ReviewEntry] = Field(default_factory=list)
    reviewed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateOut]


class ReviewAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["submit", "approve", "reject"]
    reason: str | None = Field(default=None, max_length=2000, examples=["광고성 문구 포함"])


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] | None = Field(
        default=None,
        description="Values by path (`coupon.name`) or nested; none: a sample for every variable",
        examples=[
            {"profile.name": "김다시", "cart.product_name": "수분크림", "link": "https://go.dasi.shop/c/AbC"}
        ],
    )
    sender_profile_id: uuid.UUID | None = Field(default=None, description="Default: the workspace's default")


class FallbackOut(BaseModel):
    channel: Literal["sms", "lms", "mms"]
    body: str
    subject: str | None = None
    body_bytes: int


class PreviewOut(BaseModel):
    channel: str = Field(description="The final channel: an `sms` template shows sms, lms or mms")
    is_ad: bool
    subject: str | None = None
    body: str = Field(description="The final text, in ad form when `is_ad`")
    body_bytes: int | None = Field(default=None, description="EUC-KR bytes (SMS/LMS/MMS)")
    subject_bytes: int | None = None
    image_url: str | None = None
    buttons: list[dict[str, Any]] = Field(default_factory=list)
    template_parameters: dict[str, str] = Field(default_factory=dict)
    fallback: FallbackOut | None = None
    warnings: list[str] = Field(default_factory=list)


class SenderNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(pattern=r"^[\d\s()+-]{8,20}$", examples=["02-1234-5678"])
    verified: bool = Field(default=False, description="Registered with the provider (발신번호 사전등록)")


class SenderProfileBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_default: bool | None = None
    sender_numbers: list[SenderNumber] | None = None
    opt_out_number: str | None = Field(default=None, pattern=r"^080[\d\s-]{7,10}$", examples=["080-123-4567"])
    opt_out_verified: bool | None = None
    kakao_sender_key: str | None = Field(default=None, max_length=100)
    kakao_channel_id: str | None = Field(default=None, max_length=100, examples=["@dasi"])
    kakao_ad_cutoff: time | None = Field(
        default=None,
        description="Last minute for Kakao marketing messages (at most 20:50)",
        examples=["20:00"],
    )
    email_from: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    email_from_name: str | None = Field(default=None, max_length=100)
    email_verified: bool | None = None

    @field_validator("kakao_ad_cutoff")
    @classmethod
    def _cutoff(cls, value: time | None) -> time | None:
        if value is not None and not time(8, 0) < value <= time(20, 50):
            raise ValueError("Kakao accepts marketing messages from 08:00 to 20:50 only")
        return value


class SenderProfileCreate(SenderProfileBase):
    name: str = Field(min_length=1, max_length=200, examples=["기본"])
    store_name: str = Field(min_length=1, max_length=100, examples=["다시 스토어"])


class SenderProfileUpdate(SenderProfileBase):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    store_name: str | None = Field(default=None, min_length=1, max_length=100)


class SenderProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    is_default: bool
    store_name: str
    sender_numbers: list[SenderNumber]
    opt_out_number: str | None = None
    opt_out_verified: bool
    kakao_sender_key: str | None = None
    kakao_channel_id: str | None = None
    kakao_ad_cutoff: time
    email_from: str | None = None
    email_from_name: str | None = None
    email_verified: bool
    created_at: datetime
    updated_at: datetime


class SenderProfileList(BaseModel):
    items: list[SenderProfileOut]


class SuppressionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: SuppressionChannel = Field(examples=["sms"])
    address: str = Field(
        min_length=1,
        max_length=512,
        description="Phone, email, push token or `profile:<id>`",
        examples=["010-1234-5678"],
    )
    source: SuppressionSource = "manual"
    reason: str | None = Field(default=None, max_length=2000, examples=["고객 요청으로 수신거부"])
    profile_id: uuid.UUID | None = None


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: SuppressionChannel
    address: str
    source: SuppressionSource
    reason: str | None = None
    profile_id: uuid.UUID | None = None
    created_at: datetime


class SuppressionList(BaseModel):
    items: list[SuppressionOut]
    next_before: datetime | None = Field(default=None, description="Pass as `before` for the next page")
