"""The Segment HTTP Tracking API messages, as typed models, and what the tracking routes answer.

Field names are Segment's (camelCase). Unknown fields (`integrations`, `version`, `channel`, ...)
are accepted and ignored, so existing Segment SDKs work unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from shared.errors import FieldError

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]
JsonObject = dict[str, Any]

EXAMPLE_TRACK: dict[str, Any] = {
    "type": "track",
    "userId": "user-1004",
    "event": "Product Viewed",
    "properties": {"product": "수분크림", "price": 28000, "currency": "KRW"},
    "messageId": "0b6a7c1e-6f1d-4c9a-9a43-3f9f1c2b7d10",
    "timestamp": "2026-11-23T09:59:58+09:00",
    "sentAt": "2026-11-23T10:00:00+09:00",
}
EXAMPLE_IDENTIFY: dict[str, Any] = {
    "type": "identify",
    "userId": "user-1004",
    "anonymousId": "anon-7f3a",
    "traits": {"name": "김민지", "email": "minji@example.com"},
}


class SegmentMessage(BaseModel):
    """What every message carries. One of `userId` and `anonymousId` is required."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", coerce_numbers_to_str=True
    )

    user_id: Id | None = None
    anonymous_id: Id | None = None
    message_id: Id | None = Field(default=None, description="Client id for dedupe; generated if absent")
    timestamp: datetime | None = Field(default=None, description="When it happened, by the client's clock")
    sent_at: datetime | None = Field(
        default=None, description="When the client sent it, by the same clock; corrects clock skew"
    )
    context: JsonObject = Field(default_factory=dict)


class TrackMessage(SegmentMessage):
    type: Literal["track"] = "track"
    event: Name
    properties: JsonObject = Field(default_factory=dict)

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_TRACK]})


class IdentifyMessage(SegmentMessage):
    type: Literal["identify"] = "identify"
    traits: JsonObject = Field(default_factory=dict)

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_IDENTIFY]})


class PageMessage(SegmentMessage):
    type: Literal["page"] = "page"
    name: Name | None = None
    category: Name | None = None
    properties: JsonObject = Field(default_factory=dict)


class ScreenMessage(SegmentMessage):
    type: Literal["screen"] = "screen"
    name: Name | None = None
    category: Name | None = None
    properties: JsonObject = Field(default_factory=dict)


class GroupMessage(SegmentMessage):
    type: Literal["group"] = "group"
    group_id: Id
    traits: JsonObject = Field(default_factory=dict)


class AliasMessage(SegmentMessage):
    """`previousId` (an anonymousId or a former userId) and `userId` are the same shopper."""

    type: Literal["alias"] = "alias"
    previous_id: Id
    user_id: Id


AnyMessage = Annotated[
    TrackMessage | IdentifyMessage | PageMessage | ScreenMessage | GroupMessage | AliasMessage,
    Field(discriminator="type"),
]


class BatchRequest(BaseModel):
    """Up to 500 KB of messages. Each is checked on its own: a bad one is reported, the others kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        json_schema_extra={"examples": [{"batch": [EXAMPLE_IDENTIFY, EXAMPLE_TRACK]}]},
    )

    batch: list[AnyMessage]
    sent_at: datetime | None = Field(default=None, description="Applies to messages without their own")
    context: JsonObject = Field(default_factory=dict, description="Merged under each message's context")


class TrackingResult(BaseModel):
    """Segment's answer (`{"success": true}`) plus what was kept and what was not.

    In a batch, a message that is invalid is left out and named in `rejected` (its index) and in
    `errors` (field paths like `body.batch.3.userId`); every valid message beside it is stored.
    """

    success: bool = True
    accepted: int = Field(description="Messages stored now or already stored earlier (same messageId)")
    duplicates: int = Field(default=0, description="Of those, messages whose messageId was seen before")
    rejected: list[int] = Field(default_factory=list, description="Indexes of batch messages left out")
    errors: list[FieldError] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "success": True,
                    "accepted": 2,
                    "duplicates": 0,
                    "rejected": [2],
                    "errors": [
                        {
                            "field": "body.batch.2.userId",
                            "message": "userId or anonymousId is required",
                            "type": "missing",
                        }
                    ],
                }
            ]
        }
    )
