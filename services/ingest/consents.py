"""Marketing consent per channel, and night consent, with the time each was given.

Identify traits carry them, in either shape:

    "consents": {"sms": true, "kakao": {"granted": false, "at": "2026-11-20T10:00:00+09:00"},
                 "push": "Y", "email": "동의", "night": false}
    "sms_consent": true, "night_consent": "N"          (flat keys, as many member exports have)

The time given is the value's own `at`, else the `consents_at` trait, else when the identify
happened. The latest statement wins, whatever order they arrive in: an old "yes" replayed after a
newer "no" does not re-subscribe anyone. The dispatcher reads these (and re-confirms after 2 years).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.ingest.facts import aware_timestamp

TOPICS = ("sms", "kakao", "push", "email", "night")
_YES = {"true", "y", "yes", "1", "동의", "예", "수신", "on"}
_NO = {"false", "n", "no", "0", "거부", "아니오", "아니요", "미동의", "수신거부", "off"}


class IdentifyLike(Protocol):
    @property
    def profile_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def properties(self) -> dict[str, Any]: ...
    @property
    def occurred_at(self) -> datetime: ...


@dataclass(frozen=True)
class Consent:
    profile_id: uuid.UUID
    topic: str
    granted: bool
    given_at: datetime


def parse_granted(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _YES else False if word in _NO else None
    return None


def consents_of(event: IdentifyLike) -> list[Consent]:
    if event.type != "identify":
        return []
    traits = event.properties
    nested = traits.get("consents")
    if not isinstance(nested, dict):
        nested = {}
    default_at = aware_timestamp(traits.get("consents_at")) or event.occurred_at
    found = []
    for topic in TOPICS:
        value = nested.get(topic, traits.get(f"{topic}_consent"))
        at = default_at
        if isinstance(value, dict):
            at = aware_timestamp(value.get("at")) or default_at
            value = value.get("granted")
        granted = parse_granted(value)
        if granted is not None:
            found.append(Consent(event.profile_id, topic, granted, at))
    return found
