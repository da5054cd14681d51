"""Ingest: a tracked batch's statements as two server-side functions, one round trip each.

A batch was 7 round trips between BEGIN and COMMIT: the locks, the claim, the write, the aggregates,
the cart's two statements, the flags. Under load each costs ~0.35 ms of wall time (a wake-up of the
client and of the backend, each waiting for a core), whatever the statement does, and a workspace
runs one transaction at a time in each worker, so the fixed cost is what its requests queue behind.

- `ingest.lock_claim_and_find`: sets the transaction's plan settings, locks the batch's ids, then
  claims its messageIds (returning the repeats, where it returned every claimed one) and finds its
  known identities. One round trip where it was two: in a function each statement reads what was
  committed when *it* started, so the claim still reads after the locks are held. The messageIds
  come as one JSON text (asyncpg encodes a `text[]` at ~0.5 us an element). The dedupe window's
  generations and probe margin come from the caller (models.py, dedupe.py).
- `ingest.store_batch`: the new profiles and identities, the events and their outbox row, the
  aggregates, views, coupons, consents, the cart and the flags, each given as one JSON text (or
  NULL: nothing of that family). Each statement sees the ones before it, so the cart's changes see
  a purchase's emptying and the flags see the consents.
- `ingest.refresh_flags`: the flags of some profiles (store_batch's last step; a bulk load's too).

The statements are the ones services/ingest/repository.py, aggregates.py and flags.py sent (what
each is for is told there; how each reaches its rows by key, beside it here). `store_batch` and
`refresh_flags` run their statements on generic plans without seq scans (`SET` clauses), the
settings of `repository._PLAN_BY_KEY`; `lock_claim_and_find` sets them for the whole transaction.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ids are locked as '<workspace>/<kind>/<value>' hashed, in one order; beyond 1,000 ids a batch
# locks buckets of them (Postgres has room for a few thousand locks across all sessions).
LOCK_CLAIM_AND_FIND = """
CREATE FUNCTION ingest.lock_claim_and_find(
    workspace uuid, messages json, kinds text[], vals text[],
    generations int, probe_margin_s float8
) RETURNS TABLE (message_id text, kind text, value text, profile_id uuid, user_id text,
                 last_seen_at timestamptz)
LANGUAGE plpgsql VOLATILE
AS $function$
#variable_conflict use_column
DECLARE
    buckets int := CASE WHEN cardinality(kinds) > 1000 THEN 1000 ELSE 0 END;
BEGIN
    -- for the rest of the transaction (a merge's statements after this run on them too)
    PERFORM set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_seqscan', 'off', true);

    PERFORM count(pg_advisory_xact_lock(k.h))
    FROM (
        SELECT DISTINCT CASE WHEN buckets > 0 THEN hashtextextended(x.key, 0) % buckets
                             ELSE hashtextextended(x.key, 0) END AS h
        FROM (SELECT workspace::text || '/' || k.kind || '/' || k.value AS key
              FROM unnest(kinds, vals) AS k(kind, value)) AS x
        ORDER BY 1
    ) AS k;

    RETURN QUERY
    WITH generation AS MATERIALIZED (  -- generation 0 if the window's row is missing: never none
        SELECT coalesce(d.generation, 0) AS current,
               extract(epoch FROM coalesce(d.started_at, 'infinity'))::float8 + probe_margin_s AS new_from
        FROM (SELECT) AS one LEFT JOIN ingest.dedupe_window AS d ON d.one_row
    ), window_now AS (
        SELECT current, (current + generations - 1) % generations AS previous, new_from FROM generation
    ), claims AS MATERIALIZED (  -- `messages`: [[messageId, when it was made or null], ...]
        SELECT c->>0 AS message_id, (c->>1)::float8 AS made_at FROM json_array_elements(messages) AS c
    ), claimed AS (
        INSERT INTO ingest.received_messages AS r (workspace_id, message_id, generation)
        SELECT workspace, m.message_id, w.current
        FROM claims AS m
        CROSS JOIN window_now AS w
        -- `OR` tries its arguments in order: the previous generation is searched only for a message
        -- not known to be made after the current one started
        WHERE m.made_at >= w.new_from OR NOT EXISTS (
            SELECT 1 FROM ingest.received_messages AS p
            WHERE p.workspace_id = workspace AND p.message_id = m.message_id AND p.generation = w.previous
            OFFSET 0)  -- a key probe per id: as an anti-join, it read the whole previous generation
        ORDER BY m.message_id
        ON CONFLICT (workspace_id, message_id, generation) DO NOTHING
        RETURNING r.message_id
    )
    -- the repeats (the messageIds not claimed): a few rows where the claimed ones were all of them
    SELECT m.message_id, NULL::text, NULL::text, NULL::uuid, NULL::text, NULL::timestamptz
    FROM claims AS m
    WHERE NOT EXISTS (SELECT 1 FROM claimed AS c WHERE c.message_id = m.message_id COLLATE "C")
    UNION ALL
    SELECT NULL, k.kind, k.value, i.profile_id, p.user_id::text, a.last_seen_at
    FROM unnest(kinds, vals) AS k(kind, value)
    CROSS JOIN LATERAL (
        SELECT profile_id FROM ingest.identities
        WHERE workspace_id = workspace AND kind = k.kind AND value = k.value
        LIMIT 1
    ) AS i
    CROSS JOIN LATERAL (
        SELECT user_id FROM ingest.profiles WHERE id = i.profile_id AND workspace_id = workspace LIMIT 1
    ) AS p
    LEFT JOIN LATERAL (
        SELECT last_seen_at FROM ingest.profile_aggregates
        WHERE profile_id = i.profile_id AND workspace_id = workspace
        LIMIT 1
    ) AS a ON true;
END
$function$
"""

REFRESH_FLAGS = """
CREATE FUNCTION ingest.refresh_flags(workspace uuid, profile_ids uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $function$
BEGIN
    INSERT INTO ingest.profile_aggregates AS a (
        profile_id, workspace_id, is_member, kakao_channel_friend, consent_sms, consent_kakao,
        consent_push, consent_email, consent_night, updated_at
    )
    SELECT p.id, p.workspace_id,
           p.traits @> '{"member": true}', p.traits @> '{"kakao_channel_friend": true}',
           g.*,
           now()
    FROM unnest(profile_ids) AS k(id)
    CROSS JOIN LATERAL (
        SELECT * FROM ingest.profiles WHERE id = k.id AND workspace_id = workspace LIMIT 1
    ) AS p
    CROSS JOIN LATERAL (  -- LATERAL with an aggregate: never a join with the workspace's consents
        SELECT coalesce(bool_or(c.granted) FILTER (WHERE c.topic = 'sms'), false),
               coalesce(bool_or(c.granted) FILTER (WHERE c.topic = 'kakao'), false),
               coalesce(bool_or(c.granted) FILTER (WHERE c.topic = 'push'), false),
               coalesce(bool_or(c.granted) FILTER (WHERE c.topic = 'email'), false),
               coalesce(bool_or(c.granted) FILTER (WHERE c.topic = 'night'), false)
        FROM ingest.consents AS c WHERE c.profile_id = p.id AND c.workspace_id = p.workspace_id
    ) AS g
    ON CONFLICT (profile_id) DO UPDATE SET
        is_member = excluded.is_member, kakao_channel_friend = excluded.kakao_channel_friend,
        consent_sms = excluded.consent_sms, consent_kakao = excluded.consent_kakao,
        consent_push = excluded.consent_push, consent_email = excluded.consent_email,
        consent_night = excluded.consent_night, updated_at = now();
END
$function$
"""

STORE_BATCH = """
CREATE FUNCTION ingest.store_batch(
    workspace uuid, now_at timestamptz,
    new_profiles json, new_identities json, updated_profiles json, events bytea,
    profile_rows json, view_rows json, coupon_rows json, emptied_carts json, consent_rows json,
    cart_changes json, cart_touched uuid[], flagged uuid[]
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $function$
BEGIN
    -- identities: new profiles first, then their identities, then what known profiles are given
    IF new_profiles IS NOT NULL THEN
        INSERT INTO ingest.profiles (id, workspace_id, user_id, traits, created_at, updated_at)
        SELECT p.id, workspace, p.user_id, coalesce(p.traits, '{}'), now_at, now_at
        FROM json_to_recordset(new_profiles) AS p(id uuid, user_id text, traits jsonb);
    END IF;
    IF new_identities IS NOT NULL THEN
        INSERT INTO ingest.identities (workspace_id, kind, value, profile_id)
        SELECT workspace, i.kind, i.value, i.profile_id
        FROM json_to_recordset(new_identities) AS i(kind text, value text, profile_id uuid)
        ON CONFLICT (workspace_id, kind, value) DO NOTHING;
    END IF;
    IF updated_profiles IS NOT NULL THEN
        -- an upsert, so each profile is reached through its key; every profile named exists (found
        -- by this batch), so only the update happens, and only inside the workspace
        INSERT INTO ingest.profiles AS p (id, workspace_id, user_id, traits, updated_at)
        SELECT u.id, workspace, u.user_id, coalesce(u.traits, '{}'), now_at
        FROM json_to_recordset(updated_profiles) AS u(id uuid, user_id text, traits jsonb)
        ON CONFLICT (id) DO UPDATE
        SET user_id = coalesce(p.user_id, excluded.user_id), traits = p.traits || excluded.traits,
            updated_at = excluded.updated_at
        WHERE p.workspace_id = excluded.workspace_id;
    END IF;

    -- the events, and their outbox row (one for them all)
    IF events IS NOT NULL THEN
        WITH input AS (
            SELECT * FROM jsonb_to_recordset(convert_from(events, 'UTF8')::jsonb) AS e(
                id uuid, profile_id uuid, message_id text, type text, name text, properties jsonb,
                context jsonb, occurred_at timestamptz)
        ), stored AS (
            INSERT INTO ingest.events
                (id, workspace_id, profile_id, message_id, type, name, properties, context,
                 occurred_at, received_at)
            SELECT id, workspace, profile_id, message_id, type, name, properties, context,
                   occurred_at, now_at
            FROM input
        )
        INSERT INTO ingest.event_outbox
            (workspace_id, event_ids, event_times, profile_ids, types, names, created_at)
        SELECT workspace, array_agg(id), array_agg(occurred_at), array_agg(profile_id),
               array_agg(type), array_agg(name), now_at
        FROM input;  -- the aggregates of one group read the rows in one order: the arrays line up
    END IF;

    -- the aggregates: what the batch adds to each profile
    IF profile_rows IS NOT NULL THEN
        INSERT INTO ingest.profile_aggregates AS a (
            profile_id, workspace_id, visit_count, first_visit_at, last_visit_at, last_seen_at,
            session_page_views, last_login_at, purchase_count, purchase_total, last_purchase_at,
            updated_at
        )
        SELECT r.profile_id, workspace, r.new_visits, r.first_visit, r.last_visit, r.last_seen,
               r.page_views, r.last_login, r.purchases, r.purchase_amount, r.last_purchase, now()
        FROM json_to_recordset(profile_rows) AS r(
            profile_id uuid, new_visits integer, first_visit timestamptz, last_visit timestamptz,
            last_seen timestamptz, page_views integer, last_login timestamptz, purchases integer,
            purchase_amount numeric, last_purchase timestamptz)
        ON CONFLICT (profile_id) DO UPDATE SET
            visit_count = a.visit_count + excluded.visit_count,
            first_visit_at = least(a.first_visit_at, excluded.first_visit_at),
            last_visit_at = greatest(a.last_visit_at, excluded.last_visit_at),
            last_seen_at = greatest(a.last_seen_at, excluded.last_seen_at),
            session_page_views = CASE WHEN excluded.last_visit_at IS NOT NULL
                                      THEN excluded.session_page_views
                                      ELSE a.session_page_views + excluded.session_page_views END,
            last_login_at = greatest(a.last_login_at, excluded.last_login_at),
            purchase_count = a.purchase_count + excluded.purchase_count,
            purchase_total = a.purchase_total + excluded.purchase_total,
            last_purchase_at = greatest(a.last_purchase_at, excluded.last_purchase_at),
            updated_at = now();
    END IF;
    IF view_rows IS NOT NULL THEN
        INSERT INTO ingest.product_views AS v (
            profile_id, product_id, workspace_id, name, category, brand, view_count, first_viewed_at,
            last_viewed_at
        )
        SELECT r.profile_id, r.product_id, workspace, r.name, r.category, r.brand, r.views,
               r.first_viewed_at, r.last_viewed_at
        FROM json_to_recordset(view_rows) AS r(
            profile_id uuid, product_id text, name text, category text, brand text, views integer,
            first_viewed_at timestamptz, last_viewed_at timestamptz)
        ON CONFLICT (profile_id, product_id) DO UPDATE SET
            name = coalesce(excluded.name, v.name),
            category = coalesce(excluded.category, v.category),
            brand = coalesce(excluded.brand, v.brand),
            view_count = v.view_count + excluded.view_count,
            first_viewed_at = least(v.first_viewed_at, excluded.first_viewed_at),
            last_viewed_at = greatest(v.last_viewed_at, excluded.last_viewed_at);
    END IF;
    IF coupon_rows IS NOT NULL THEN
        INSERT INTO ingest.coupons AS c (profile_id, coupon_id, workspace_id, name, expires_at, issued_at)
        SELECT r.profile_id, r.coupon_id, workspace, r.name, r.expires_at, r.issued_at
        FROM json_to_recordset(coupon_rows) AS r(
            profile_id uuid, coupon_id text, name text, expires_at timestamptz, issued_at timestamptz)
        ON CONFLICT (profile_id, coupon_id) DO UPDATE SET
            name = coalesce(excluded.name, c.name),
            expires_at = coalesce(excluded.expires_at, c.expires_at),
            issued_at = greatest(c.issued_at, excluded.issued_at);
    END IF;
    IF consent_rows IS NOT NULL THEN  -- the latest word on each topic wins
        INSERT INTO ingest.consents AS c (profile_id, topic, workspace_id, granted, given_at, updated_at)
        SELECT DISTINCT ON (profile_id, topic) profile_id, topic, workspace, granted, given_at, now()
        FROM json_to_recordset(consent_rows) AS n(
            profile_id uuid, topic text, granted boolean, given_at timestamptz)
        ORDER BY profile_id, topic, given_at DESC
        ON CONFLICT (profile_id, topic) DO UPDATE
        SET granted = excluded.granted, given_at = excluded.given_at, updated_at = now()
        WHERE excluded.given_at >= c.given_at;
    END IF;

    -- the cart: a purchase empties what was in it before, then the batch's changes, then the
    -- emptied products go and each touched profile's totals are summed again
    IF emptied_carts IS NOT NULL THEN
        DELETE FROM ingest.cart_items AS c
        WHERE c.ctid = ANY(ARRAY(
            SELECT i.ctid
            FROM json_to_recordset(emptied_carts) AS e(profile_id uuid, at timestamptz)
            CROSS JOIN LATERAL (
                SELECT ctid FROM ingest.cart_items
                WHERE profile_id = e.profile_id AND workspace_id = workspace AND added_at <= e.at
                OFFSET 0  -- a key probe per profile: never a join with the whole table
            ) AS i));
    END IF;
    IF cart_changes IS NOT NULL THEN
        INSERT INTO ingest.cart_items AS c
            (profile_id, product_id, workspace_id, name, quantity, price, added_at)
        SELECT r.profile_id, r.product_id, workspace, r.name, r.quantity, r.price,
               coalesce(r.added_at, '-infinity')
        FROM json_to_recordset(cart_changes) AS r(
            profile_id uuid, product_id text, quantity integer, name text, price numeric,
            added_at timestamptz)
        ON CONFLICT (profile_id, product_id) DO UPDATE SET
            quantity = c.quantity + excluded.quantity,
            name = coalesce(excluded.name, c.name),
            price = coalesce(excluded.price, c.price),
            added_at = greatest(c.added_at, excluded.added_at);
    END IF;
    IF cart_touched IS NOT NULL THEN
        DELETE FROM ingest.cart_items AS c
        WHERE c.ctid = ANY(ARRAY(
            SELECT i.ctid FROM unnest(cart_touched) AS t(profile_id) CROSS JOIN LATERAL (
                SELECT ctid FROM ingest.cart_items
                WHERE profile_id = t.profile_id AND workspace_id = workspace AND quantity <= 0
                OFFSET 0  -- a key probe per profile, as above
            ) AS i));
        -- an upsert, so each row is reached through its key (the aggregates' upsert above made every
        -- row: a profile with a cart change had activity); LATERAL with an aggregate: one key probe
        -- of the cart per profile
        INSERT INTO ingest.profile_aggregates AS a (
            profile_id, workspace_id, cart_item_count, cart_total, cart_last_added_at, updated_at
        )
        SELECT t.profile_id, workspace, s.items, s.total, s.last_added, now()
        FROM unnest(cart_touched) AS t(profile_id) CROSS JOIN LATERAL (
            SELECT coalesce(sum(c.quantity), 0) AS items,
                   coalesce(sum(c.quantity * c.price), 0) AS total,
                   max(c.added_at) FILTER (WHERE c.added_at > '-infinity') AS last_added
            FROM ingest.cart_items AS c WHERE c.profile_id = t.profile_id AND c.workspace_id = workspace
        ) AS s
        ON CONFLICT (profile_id) DO UPDATE SET
            cart_item_count = excluded.cart_item_count,
            cart_total = excluded.cart_total,
            cart_last_added_at = excluded.cart_last_added_at
        WHERE a.workspace_id = excluded.workspace_id;
    END IF;

    -- then the copies segments read, from the traits and consents just written
    IF flagged IS NOT NULL THEN
        PERFORM ingest.refresh_flags(workspace, flagged);
    END IF;
END
$function$
"""


def upgrade() -> None:
    op.execute(LOCK_CLAIM_AND_FIND)
    op.execute(REFRESH_FLAGS)
    op.execute(STORE_BATCH)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION ingest.store_batch(uuid, timestamptz, json, json, json, bytea, json, json, json, json,"
        " json, json, uuid[], uuid[])"
    )
    op.execute("DROP FUNCTION ingest.refresh_flags(uuid, uuid[])")
    op.execute("DROP FUNCTION ingest.lock_claim_and_find(uuid, json, text[], text[], int, float8)")
