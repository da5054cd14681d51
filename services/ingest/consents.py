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
from typing import Any

from services.ingest.facts import aware_timestamp

TOPICS = ("sms", "kakao", "push", "email", "night")
_YES = {"true", "y", "yes", "1", "동의", "예", "수신", "on"}
_NO = {"false", "n", "no", "0", "거부", "아니오", "아니요", "미동의", "수신거부", "off"}


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


def consents_of(profile_id: uuid.UUID, kind: str, traits: dict[str, Any], at: datetime) -> list[Consent]:
    """The consents an event gives (an identify's `traits`, made `at`)."""
    if kind != "identify":
        return []
    nested = traits.get("consents")
    if not isinstance(nested, dict):
        nested = {}
    default_at = aware_timestamp(traits.get("consents_at")) or at
    found = []
    for topic in TOPICS:
        value = nested.get(topic, traits.get(f"{topic}_consent"))
        given_at = default_at
        if isinstance(value, dict):
            given_at = aware_timestamp(value.get("at")) or default_at
            value = value.get("granted")
        granted = parse_granted(value)
        if granted is not None:
            found.append(Consent(profile_id, topic, granted, given_at))
    return found
