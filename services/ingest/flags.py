"""Who a profile is, copied onto its `profile_aggregates` row for segments: member or not, Kakao
channel friend or not, and the consent topics granted now.

The sources stay where they are (the `member` and `kakao_channel_friend` traits on `profiles`, the
latest word per topic in `consents`); this copy lets a segment such as "members who signed in before
March 17 and take SMS" be one read of `profile_aggregates` instead of a join with a million wide
profile rows and the consents. It is written in the same transaction as its sources, after them,
for the profiles whose traits or consents the batch touched (and merged profiles). It creates the
aggregates row of a profile that has none yet: a profile without a row has no flag set.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.consents import TOPICS
from shared.db import driver_connection

# the traits whose value `true` makes the flag (the segmenter's conditions read the flags)
MEMBER_TRAIT = "member"
CHANNEL_FRIEND_TRAIT = "kakao_channel_friend"
CONSENT_COLUMNS = {topic: f"consent_{topic}" for topic in TOPICS}

_COLUMNS = ", ".join(["is_member", "kakao_channel_friend", *CONSENT_COLUMNS.values()])
_GRANTED = ",\n           ".join(
    f"coalesce(bool_or(c.granted) FILTER (WHERE c.topic = '{topic}'), false) AS {column}"
    for topic, column in CONSENT_COLUMNS.items()
)
_SET = ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS.split(", "))


def _refresh_sql(profiles: str) -> str:
    """The upsert of the flags of the workspace $1's profiles `p` (a FROM item).
    Each profile's consents are read by its key (LATERAL with an aggregate: never a join with the
    whole workspace's consents)."""
    return f"""
    INSERT INTO ingest.profile_aggregates AS a (profile_id, workspace_id, {_COLUMNS}, updated_at)
    SELECT p.id, p.workspace_id,
           p.traits @> '{{"{MEMBER_TRAIT}": true}}', p.traits @> '{{"{CHANNEL_FRIEND_TRAIT}": true}}',
           g.*,
           now()
    FROM {profiles}
    CROSS JOIN LATERAL (
        SELECT {_GRANTED}
        FROM ingest.consents c WHERE c.profile_id = p.id AND c.workspace_id = p.workspace_id
    ) g
    ON CONFLICT (profile_id) DO UPDATE SET {_SET}, updated_at = now()
    """  # noqa: S608 - built from constants


# the profiles $2, each found by its key
_REFRESH = _refresh_sql("""unnest($2::uuid[]) AS k(id)
    CROSS JOIN LATERAL (SELECT * FROM ingest.profiles WHERE id = k.id AND workspace_id = $1 LIMIT 1) p""")
# every profile of the workspace $1: for bulk loads (the segmenter benchmark) and repairs
REFRESH_WORKSPACE = _refresh_sql("(SELECT * FROM ingest.profiles WHERE workspace_id = $1) p")


async def refresh(session: AsyncSession, workspace_id: uuid.UUID, profile_ids: Collection[uuid.UUID]) -> None:
    """Copy the flags of `profile_ids` from their traits and consents as they are now."""
    if not profile_ids:
        return
    connection = await driver_connection(session)
    await connection.execute(_REFRESH, workspace_id, list(profile_ids))
