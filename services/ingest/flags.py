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

# `ingest.refresh_flags(workspace, profile_ids)` (migration 0015) copies them: the `member` and
# `kakao_channel_friend` traits whose value is `true` make those flags, and each consent topic's
# latest word its `consent_<topic>` column (services/ingest/consents.py's TOPICS). Each profile is
# found by its key, and its consents read by its key (LATERAL with an aggregate: never a join with
# the whole workspace's consents). A tracked batch has it run last in its write
# (`repository.store_batch`'s `flagged`).

# every profile of the workspace $1: for bulk loads (the segmenter benchmark) and repairs
REFRESH_WORKSPACE = """
    SELECT ingest.refresh_flags($1, ARRAY(SELECT id FROM ingest.profiles WHERE workspace_id = $1))
"""
