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

from sqlalchemy import bindparam, column, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TEXT, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.policy import ConsentFact, Recipient
from services.dispatcher.suppressions import AD_OPT_OUTS, PHONE_SQL, normalize_email

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
        WHERE workspace_id = :workspace_id AND id = ANY(:profile_ids)
    )
    SELECT p.id, p.traits ->> 'name' AS name, p.phone, p.email, p.push_tokens,
           p.traits -> 'kakao_channel_friend' AS friend,
           coalesce(c.consents, '{}'::jsonb) AS consents,
           coalesce(s.suppressed, '[]'::jsonb) AS suppressed
    FROM p
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(topic, jsonb_build_array(granted, given_at)) AS consents
        FROM ingest.consents
        WHERE profile_id = p.id AND workspace_id = :workspace_id
    ) c ON true
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(jsonb_build_array(channel, address, source)) AS suppressed
        FROM dispatcher.suppressions
        WHERE workspace_id = :workspace_id
          AND address = ANY(array_remove(ARRAY[p.phone, p.email, 'profile:' || p.id::text], NULL)
                            || p.push_tokens)
    ) s ON true
"""
# only a module constant is spliced in (the phone normalization); every value is a bound parameter
_PHONE = PHONE_SQL.format(value="coalesce(traits ->> 'phone', traits ->> 'mobile')")
_LOAD = text(_LOAD_SQL.replace("$PHONE", _PHONE)).bindparams(
    bindparam("profile_ids", type_=ARRAY(UUID(as_uuid=True)))
)
_LOAD_COLUMNS = _LOAD.columns(
    column("id", UUID(as_uuid=True)),
    column("name", TEXT),
    column("phone", TEXT),
    column("email", TEXT),
    column("push_tokens", ARRAY(TEXT)),
    column("friend", JSONB),
    column("consents", JSONB),
    column("suppressed", JSONB),
)


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
    rows = await session.execute(
        _LOAD_COLUMNS, {"workspace_id": workspace_id, "profile_ids": list(dict.fromkeys(profile_ids))}
    )
    found: dict[uuid.UUID, Recipient] = {}
    for row in rows:
        found[row.id] = Recipient(
            profile_id=row.id,
            name=row.name,
            phone=row.phone or None,
            email=normalize_email(row.email) if row.email else None,
            push_tokens=tuple(dict.fromkeys(row.push_tokens or ())),
            kakao_channel_friend=_flag(row.friend),
            consents=_consents(row.consents),
            suppressed=frozenset((c, a) for c, a, source in row.suppressed if source not in AD_OPT_OUTS),
            ads_suppressed=frozenset((c, a) for c, a, source in row.suppressed if source in AD_OPT_OUTS),
        )
    return found
