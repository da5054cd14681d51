"""Load what the policy needs of a batch of recipients in one set-based query.

For each profile id of one workspace: name, phone, email, push tokens and Kakao channel friendship
(from ingest's profile traits), the latest consent per topic (ingest.consents) and every suppression
that matches one of the profile's addresses or the profile itself (dispatcher.suppressions). The
dispatcher reads ingest's tables in SQL (DESIGN: a read where a join is the efficient way) and never
writes them. Ids of another workspace, or unknown ids, are simply absent from the answer.

Traits read: `name`; `phone` / `mobile` (normalized to digits, +82 to 0); `email` (lower case);
`push_tokens` (list) / `push_token` / `fcm_token` / `apns_token`; `kakao_channel_friend`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.policy import ConsentFact, Recipient
from services.dispatcher.suppressions import AD_OPT_OUTS, PHONE_SQL, normalize_email
from shared.db import driver_connection

_YES = {"true", "y", "yes", "1", "동의", "예", "on"}

_LOAD_SQL = """
    WITH p AS (
        SELECT id, traits,
               $PHONE AS phone,
               lower(trim(traits ->> 'email')) AS email,
               array_remove(
                   ARRAY[traits ->> 'push_token', traits ->> 'fcm_token', traits ->> 'apns_token']
                   || CASE WHEN jsonb_typeof(traits -> 'push_tokens') = 'array'
                           THEN ARRAY(SELECT jsonb_array_elements_text(traits -> 'push_tokens'))
                           ELSE '{}'::text[] END,
                   NULL
               ) AS push_tokens
        FROM ingest.profiles
        WHERE workspace_id = $1 AND id = ANY($2::uuid[])
    )
    SELECT p.id, p.traits ->> 'name' AS name, p.phone, p.email, p.push_tokens,
           (p.traits -> 'kakao_channel_friend')::text AS friend,
           coalesce(c.consents, '{}'::jsonb)::text AS consents,
           coalesce(s.suppressed, '[]'::jsonb)::text AS suppressed
    FROM p
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(topic, jsonb_build_array(granted, given_at)) AS consents
        FROM ingest.consents
        WHERE profile_id = p.id AND workspace_id = $1
    ) c ON true
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(jsonb_build_array(channel, address, source)) AS suppressed
        FROM dispatcher.suppressions
        WHERE workspace_id = $1
          AND address = ANY(array_remove(ARRAY[p.phone, p.email, 'profile:' || p.id::text], NULL)
                            || p.push_tokens)
    ) s ON true
"""
# only a module constant is spliced in (the phone normalization); every value is a bound parameter
_PHONE = PHONE_SQL.format(value="coalesce(traits ->> 'phone', traits ->> 'mobile')")
# run on the session's asyncpg connection: no SQLAlchemy processing of the uuid array and jsonb
_LOAD = _LOAD_SQL.replace("$PHONE", _PHONE)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    return isinstance(value, str) and value.strip().lower() in _YES


def _consents(raw: dict[str, list[Any]]) -> dict[str, ConsentFact]:
    return {
        topic: ConsentFact(bool(granted), datetime.fromisoformat(given_at))
        for topic, (granted, given_at) in raw.items()
    }


async def load_recipients(
    session: AsyncSession, workspace_id: uuid.UUID, profile_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Recipient]:
    """The recipients among `profile_ids` (a batch of a few hundred) that belong to the workspace."""
    if not profile_ids:
        return {}
    conn = await driver_connection(session)
    rows = await conn.fetch(_LOAD, workspace_id, list(dict.fromkeys(profile_ids)))
    found: dict[uuid.UUID, Recipient] = {}
    for profile_id, name, phone, email, push_tokens, friend, consents, suppressed_json in rows:
        suppressed = orjson.loads(suppressed_json)
        found[profile_id] = Recipient(
            profile_id=profile_id,
            name=name,
            phone=phone or None,
            email=normalize_email(email) if email else None,
            push_tokens=tuple(dict.fromkeys(push_tokens or ())),
            kakao_channel_friend=_flag(orjson.loads(friend)) if friend else False,
            consents=_consents(orjson.loads(consents)),
            suppressed=frozenset((c, a) for c, a, source in suppressed if source not in AD_OPT_OUTS),
            ads_suppressed=frozenset((c, a) for c, a, source in suppressed if source in AD_OPT_OUTS),
        )
    return found
