"""Segment definition -> one set-based SQL query over ingest's tables.

Each condition becomes a boolean expression about the outer `ingest.profiles` row: an EXISTS /
NOT EXISTS subquery correlated on the profile id (or a test on its traits), so all / any / not and
include / exclude compose as AND / OR / NOT. Every subquery is scoped by the workspace id, every
value is a bound parameter, and relative time comes from `Scope.now` in the workspace timezone.

Profiles without a `profile_aggregates` row have zero visits, purchases and cart: a range that
admits 0 is written as "no aggregates row outside the range", so they count.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Numeric,
    Select,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BindParameter, Grouping, UnaryExpression

from services.segmenter import definition as d
from services.segmenter.ingest_tables import (
    aggregates,
    cart_items,
    coupons,
    events,
    product_views,
    profiles,
)
from services.segmenter.models import CohortMember
from shared.clock import local_date, start_of_local_day, zone

PURCHASE_EVENT = "Order Completed"
Expr = ColumnElement[bool]


class UnresolvedSegment(Exception):
    """A `segment` condition names a segment the caller did not resolve (a bug in the caller)."""


@dataclass(frozen=True)
class Scope:
    """Whose profiles, and when: everything a definition needs besides itself.

    Values that follow the clock (now, local midnight n days ago, the birthdate of someone n years
    old today) and the profiles asked about (`only`) are bound parameters with fixed names, so a
    statement built once can be run again at another time or for other profiles by passing
    `relative_values(...)` and `only` (live re-evaluation keeps each segment's statement)."""

    workspace_id: uuid.UUID
    timezone: str
    now: datetime
    segments: Mapping[uuid.UUID, d.Definition] = field(default_factory=dict)
    # live re-evaluation: only these profiles are asked about (None: every profile)
    only: tuple[uuid.UUID, ...] | None = None

    def days_ago(self, days: int) -> BindParameter[datetime]:
        """Local midnight `days` days before today (negative: after), as a UTC instant."""
        key = f"days_ago_{days}" if days >= 0 else f"days_ahead_{-days}"
        return bindparam(key, relative_value(key, self.now, self.timezone), type_=DateTime(timezone=True))

    def at_now(self) -> BindParameter[datetime]:
        return bindparam("now", self.now, type_=DateTime(timezone=True))

    def born_years_ago(self, years: int) -> BindParameter[str]:
        """The ISO date `years` years before today (local): the latest birthdate of that age."""
        key = f"born_{years}_years_ago"
        return bindparam(key, relative_value(key, self.now, self.timezone), type_=String())

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=zone(self.timezone)).astimezone(UTC)

    def today(self) -> date:
        return local_date(self.now, self.timezone)


_RELATIVE = re.compile(r"now|days_ago_(\d+)|days_ahead_(\d+)|born_(\d+)_years_ago")


def is_relative(key: str) -> bool:
    """Whether the bound parameter `key` is one of Scope's clock-following values."""
    return _RELATIVE.fullmatch(key) is not None


def relative_value(key: str, now: datetime, timezone: str) -> Any:
    """The value of Scope's clock-following parameter `key` at `now`."""
    found = _RELATIVE.fullmatch(key)
    if found is None:
        raise KeyError(key)
    ago, ahead, born = found.groups()
    if ago is not None:
        return start_of_local_day(now, timezone, int(ago))
    if ahead is not None:
        return start_of_local_day(now, timezone, -int(ahead))
    if born is not None:
        return years_before(local_date(now, timezone), int(born)).isoformat()
    return now


def relative_values(keys: Iterable[str], now: datetime, timezone: str) -> dict[str, Any]:
    return {key: relative_value(key, now, timezone) for key in keys}


ONLY = "only"  # the bound parameter holding the profile ids of a live re-evaluation


# --- the query ----------------------------------------------------------------------------------


def matches(definition: d.Definition, scope: Scope) -> Expr:
    """Whether the outer profile row is in the segment."""
    return _expr(_definition(definition, scope), scope)


def _definition(definition: d.Definition, scope: Scope) -> Part:
    excluded = [_negated(_part(n, scope)) for n in definition.exclude]
    return _all([_part(definition.include, scope), *excluded], scope)


def _aggregates_only(part: Part) -> Expr | None:
    """The test on `profile_aggregates` when the whole definition is one (a row must pass it):
    then the members are those rows, and `profiles` (a million wide rows) need not be read at all."""
    return part.test if isinstance(part, OnAggregates) and part.present else None


def member_filter(definition: d.Definition, scope: Scope) -> Expr:
    return _in_workspace(_definition(definition, scope), scope)


def _in_workspace(part: Part, scope: Scope) -> Expr:
    return and_(profiles.c.workspace_id == scope.workspace_id, _expr(part, scope))


def count_query(definition: d.Definition, scope: Scope) -> Select[Any]:
    part = _definition(definition, scope)
    on_aggregates = _aggregates_only(part)
    if on_aggregates is not None:
        return (
            select(func.count())
            .select_from(aggregates)
            .where(aggregates.c.workspace_id == scope.workspace_id, on_aggregates)
        )
    return select(func.count()).select_from(profiles).where(_in_workspace(part, scope))


def member_ids_query(
    definition: d.Definition, scope: Scope, only: Sequence[uuid.UUID] | None = None
) -> Select[Any]:
    """The ids of the members (of those in `only`, when given: live re-evaluation of a few)."""
    if only is not None:
        scope = replace(scope, only=tuple(only))
    part = _definition(definition, scope)
    on_aggregates = _aggregates_only(part)
    if on_aggregates is not None:
        query = select(aggregates.c.profile_id.label("profile_id")).where(
            aggregates.c.workspace_id == scope.workspace_id, on_aggregates
        )
        if scope.only is not None:
            query = query.where(aggregates.c.profile_id == _any_of(scope.only))
        return query
    query = select(profiles.c.id.label("profile_id")).where(_in_workspace(part, scope))
    if scope.only is not None:
        query = query.where(profiles.c.id == _any_of(scope.only))
    return query


def _any_of(ids: Sequence[uuid.UUID]) -> ColumnElement[Any]:
    return func.any(only_ids(ids))


def only_ids(ids: Sequence[uuid.UUID]) -> BindParameter[Any]:
    return bindparam(ONLY, list(ids), type_=ARRAY(Uuid()))


def page_query(definition: d.Definition, scope: Scope, *, limit: int, after: uuid.UUID | None) -> Select[Any]:
    """A page of members in id order (keyset: those after the id `after`)."""
    query = select(profiles.c.id, profiles.c.user_id, profiles.c.traits).where(
        member_filter(definition, scope)
    )
    if after is not None:
        query = query.where(profiles.c.id > after)
    return query.order_by(profiles.c.id).limit(limit)


def node(n: Any, scope: Scope) -> Expr:
    return _expr(_part(n, scope), scope)


@dataclass(frozen=True)
class OnAggregates:
    """A test on the profile's `profile_aggregates` row (one at most per profile): a row passing
    `test` exists (`present`), or none does. Kept apart from other expressions so that the tests of
    one `all` group become ONE subquery on the table instead of one each (each is a scan or a join
    of a million rows at scale): with one row per profile, EXISTS(a) AND EXISTS(b) is EXISTS(a AND b),
    EXISTS(a) AND NOT EXISTS(b) is EXISTS(a AND NOT coalesce(b, false)), and NOT EXISTS(a) AND
    NOT EXISTS(b) is NOT EXISTS(a OR b)."""

    test: Expr
    present: bool


Part = Expr | OnAggregates


def _expr(part: Part, scope: Scope) -> Expr:
    if isinstance(part, OnAggregates):
        found = _exists(aggregates, scope, part.test)
        return found if part.present else not_(found)
    return part


def _negated(part: Part) -> Part:
    if isinstance(part, OnAggregates):
        return OnAggregates(part.test, not part.present)
    if isinstance(part, UnaryExpression) and part.operator is operators.inv:
        # NOT (NOT (EXISTS ...)) would stay a subplan run per profile; EXISTS becomes a semi-join
        inner = part.element.element if isinstance(part.element, Grouping) else part.element
        return _as_expr(inner)
    return not_(part)


def _as_expr(clause: Any) -> Expr:
    """A clause known to be boolean (the operand of a NOT), typed as such."""
    return clause


def _all(parts: list[Part], scope: Scope) -> Part:
    on_aggregates = [p for p in parts if isinstance(p, OnAggregates)]
    others = [p for p in parts if not isinstance(p, OnAggregates)]
    if len(on_aggregates) > 1:
        present = [p.test for p in on_aggregates if p.present]
        absent = [p.test for p in on_aggregates if not p.present]
        if present:
            if absent:
                present.append(not_(func.coalesce(or_(*absent), false())))
            on_aggregates = [OnAggregates(and_(*present), True)]
        else:
            on_aggregates = [OnAggregates(or_(*absent), False)]
    if not others and len(on_aggregates) == 1:
        return on_aggregates[0]
    return and_(*others, *(_expr(p, scope) for p in on_aggregates))


def _part(n: Any, scope: Scope) -> Part:
    if isinstance(n, d.AllOf):
        return _all([_part(child, scope) for child in n.all], scope)
    if isinstance(n, d.AnyOf):
        return or_(*(node(child, scope) for child in n.any))
    if isinstance(n, d.NotOf):
        return _negated(_part(n.not_, scope))
    return CONDITIONS[type(n)](n, scope)


# --- building blocks ----------------------------------------------------------------------------


def _exists(table: Table, scope: Scope, *criteria: Expr) -> Expr:
    return exists().where(
        table.c.profile_id == profiles.c.id, table.c.workspace_id == scope.workspace_id, *criteria
    )


def _counted(table: Table, scope: Scope, count: int, *criteria: Expr) -> Expr:
    """At least `count` rows of `table` for the profile match `criteria`.

    Written as `id IN (profiles with >= count rows)`, not as a correlated EXISTS ... HAVING: the
    planner cannot turn the latter into a join, so it probed the table once per profile of the
    workspace (1M profiles: seconds). The IN form groups the matching rows once and hash-joins them.
    For live re-evaluation (`scope.only`) the grouped rows are restricted to those few profiles.
    """
    if count <= 1:
        return _exists(table, scope, *criteria)
    rows = select(table.c.profile_id).where(table.c.workspace_id == scope.workspace_id, *criteria)
    if scope.only is not None:
        rows = rows.where(table.c.profile_id == _any_of(scope.only))
    return profiles.c.id.in_(rows.group_by(table.c.profile_id).having(func.count() >= count))


def _in_range(column: Column[Any], bounds: d.Range) -> Expr:
    tests = []
    if bounds.gte is not None:
        tests.append(column >= bounds.gte)
    if bounds.lte is not None:
        tests.append(column <= bounds.lte)
    return and_(*tests)


def _aggregate_range(column: Column[Any], bounds: d.Range, scope: Scope) -> OnAggregates:
    if bounds.gte is None or bounds.gte <= 0:  # 0 is in range: a profile without aggregates counts
        return OnAggregates(not_(_in_range(column, bounds)), False)
    return OnAggregates(_in_range(column, bounds), True)


def _recency(column: Column[Any], recency: d.Recency, scope: Scope) -> OnAggregates:
    days = recency.within_days if recency.within_days is not None else recency.not_within_days
    assert days is not None
    return OnAggregates(column >= scope.days_ago(days), recency.within_days is not None)


def _date_bounds(column: Column[Any], before: date | None, after: date | None, scope: Scope) -> list[Expr]:
    tests = []
    if before is not None:
        tests.append(column < scope.day_start(before))
    if after is not None:
        tests.append(column >= scope.day_start(after + timedelta(days=1)))
    return tests


def _window(column: Column[Any], window: d.Window | None, scope: Scope) -> list[Expr]:
    if window is None:
        return []
    if window.days is not None:
        return [column >= scope.days_ago(window.days)]
    tests = []
    if window.from_ is not None:
        tests.append(column >= scope.day_start(window.from_))
    if window.to is not None:
        tests.append(column < scope.day_start(window.to + timedelta(days=1)))
    return tests


def _json(value: Any) -> ColumnElement[Any]:
    return literal(value, JSONB)


# --- property filters (traits, event properties) -------------------------------------------------


def _as_instant(text: ColumnElement[str], scope: Scope) -> ColumnElement[datetime]:
    """A JSON string as an instant: a bare day is its local midnight; anything unreadable is NULL."""
    is_day = and_(text.regexp_match(r"^\d{4}-\d{2}-\d{2}$"), func.pg_input_is_valid(text, "date"))
    return case(
        (is_day, func.timezone(scope.timezone, cast(cast(text, Date), DateTime()))),
        (func.pg_input_is_valid(text, "timestamptz"), cast(text, DateTime(timezone=True))),
        else_=None,
    )


def _time_bound(f: d.PropertyFilter, scope: Scope) -> tuple[datetime, bool]:
    """(instant, inclusive) the value is compared with: days are whole local days."""
    if len(f.value) > len("2026-03-17"):
        return datetime.fromisoformat(f.value), False
    day = date.fromisoformat(f.value)
    if f.op == d.Op.before:
        return scope.day_start(day), False
    return scope.day_start(day + timedelta(days=1)), True


def property_filter(obj: ColumnElement[Any], f: d.PropertyFilter, scope: Scope) -> Expr:
    value = obj[f.key]
    text = obj[f.key].astext
    if f.op == d.Op.eq:
        return value == _json(f.value)
    if f.op == d.Op.ne:
        return value.is_distinct_from(_json(f.value))
    if f.op == d.Op.in_:
        return or_(*(value == _json(v) for v in f.value))
    if f.op == d.Op.exists:
        return obj.has_key(f.key) if f.value else not_(obj.has_key(f.key))
    if f.op == d.Op.contains:
        in_text = and_(func.jsonb_typeof(value) == "string", func.strpos(text, str(f.value)) > 0)
        in_list = and_(func.jsonb_typeof(value) == "array", value.contains(_json([f.value])))
        return or_(in_text, in_list)
    if f.op in (d.Op.before, d.Op.after):
        instant = _as_instant(text, scope)
        bound, inclusive = _time_bound(f, scope)
        if f.op == d.Op.before:
            return instant < bound
        return instant >= bound if inclusive else instant > bound
    number = case((func.jsonb_typeof(value) == "number", cast(text, Numeric)), else_=None)
    compare: dict[d.Op, Callable[[Any, Any], Expr]] = {
        d.Op.gt: lambda a, b: a > b,
        d.Op.gte: lambda a, b: a >= b,
        d.Op.lt: lambda a, b: a < b,
        d.Op.lte: lambda a, b: a <= b,
    }
    return compare[f.op](number, f.value)


# --- conditions ---------------------------------------------------------------------------------


def _flag(column: str, wanted: bool) -> OnAggregates:
    """Ingest copies the member and channel-friend traits and the granted consents onto the
    aggregates row (false, or no row, when not so), so these join the other aggregate tests."""
    return OnAggregates(aggregates.c[column].is_(True), wanted)


def _member(c: d.Member, scope: Scope) -> Part:
    return _flag("is_member", c.is_member)


def _channel_friend(c: d.ChannelFriend, scope: Scope) -> Part:
    return _flag("kakao_channel_friend", c.is_friend)


def _marketing_consent(c: d.MarketingConsent, scope: Scope) -> Part:
    return _flag(f"consent_{c.channel}", c.granted)


def _night_consent(c: d.NightConsent, scope: Scope) -> Part:
    return _flag("consent_night", c.granted)


def _gender(c: d.Gender, scope: Scope) -> Expr:
    return profiles.c.traits["gender"].astext == c.value


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def _age(c: d.AgeRange, scope: Scope) -> Expr:
    birthdate = profiles.c.traits["birthdate"].astext
    tests = [birthdate.regexp_match(r"^\d{4}-\d{2}-\d{2}$")]
    if c.min_age is not None:
        tests.append(birthdate <= scope.born_years_ago(c.min_age))
    if c.max_age is not None:
        tests.append(birthdate > scope.born_years_ago(c.max_age + 1))
    return and_(*tests)


def _region(c: d.Region, scope: Scope) -> Expr:
    region = profiles.c.traits["region"].astext
    return or_(*(region.startswith(r, autoescape=True) for r in c.regions))


def _trait(c: d.Trait, scope: Scope) -> Expr:
    return property_filter(profiles.c.traits, c, scope)


def _visit_count(c: d.VisitCount, scope: Scope) -> OnAggregates:
    return _aggregate_range(aggregates.c.visit_count, c, scope)


def _last_visit(c: d.LastVisit, scope: Scope) -> OnAggregates:
    return _recency(aggregates.c.last_seen_at, c, scope)


def _first_visit(c: d.FirstVisit, scope: Scope) -> OnAggregates:
    return OnAggregates(aggregates.c.first_visit_at >= scope.days_ago(c.within_days), True)


def _session_page_views(c: d.SessionPageViews, scope: Scope) -> OnAggregates:
    return _aggregate_range(aggregates.c.session_page_views, c, scope)


def like_pattern(pattern: str) -> str:
    """`*` matches any run of characters; everything else, LIKE's own wildcards too, is literal."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _page_viewed(c: d.PageViewed, scope: Scope) -> Expr:
    url = events.c.properties["url"].astext
    if c.match == "exact":
        url_test = url == c.url
    elif c.match == "prefix":
        url_test = url.startswith(c.url, autoescape=True)
    else:
        url_test = url.like(like_pattern(c.url), escape="\\")
    window = _window(events.c.occurred_at, c.window, scope)
    return _counted(events, scope, c.count, events.c.type == "page", url_test, *window)


def _product_viewed(c: d.ProductViewed, scope: Scope) -> Expr:
    tests: list[Expr] = []
    for column, wanted in (
        (product_views.c.product_id, c.product_id),
        (product_views.c.category, c.category),
        (product_views.c.brand, c.brand),
    ):
        if wanted is not None:
            tests.append(column == wanted)
    if c.within_days is not None:
        tests.append(product_views.c.last_viewed_at >= scope.days_ago(c.within_days))
    return _exists(product_views, scope, *tests)


def _cart_item_count(c: d.CartItemCount, scope: Scope) -> OnAggregates:
    return _aggregate_range(aggregates.c.cart_item_count, c, scope)


def _cart_total(c: d.CartTotal, scope: Scope) -> OnAggregates:
    return _aggregate_range(aggregates.c.cart_total, c, scope)


def _cart_last_added(c: d.CartLastAdded, scope: Scope) -> OnAggregates:
    column = aggregates.c.cart_last_added_at
    tests = _date_bounds(column, c.before, c.after, scope)
    if c.within_days is not None:
        tests.append(column >= scope.days_ago(c.within_days))
    return OnAggregates(and_(*tests), True)


def _product_in_cart(c: d.ProductInCart, scope: Scope) -> Expr:
    return _exists(cart_items, scope, cart_items.c.product_id == c.product_id)


def _last_purchase(c: d.LastPurchase, scope: Scope) -> OnAggregates:
    return _recency(aggregates.c.last_purchase_at, c, scope)


def _purchase_count(c: d.PurchaseCount, scope: Scope) -> OnAggregates:
    return _aggregate_range(aggregates.c.purchase_count, c, scope)


def _purchase_total(c: d.PurchaseTotal, scope: Scope) -> OnAggregates:
    return _aggregate_range(aggregates.c.purchase_total, c, scope)


def _bought(c: d.Bought, scope: Scope) -> Expr:
    item = {k: v for k, v in (("product_id", c.product_id), ("category", c.category)) if v is not None}
    return _exists(
        events,
        scope,
        events.c.type == "track",
        events.c.name == PURCHASE_EVENT,
        events.c.properties["products"].contains(_json([item])),
        *_window(events.c.occurred_at, c.window, scope),
    )


def _last_login(c: d.LastLogin, scope: Scope) -> OnAggregates:
    return OnAggregates(and_(*_date_bounds(aggregates.c.last_login_at, c.before, c.after, scope)), True)


def _coupon(c: d.CouponHeld, scope: Scope) -> Expr:
    expires = coupons.c.expires_at
    tests: list[Expr] = []
    if c.coupon_id is not None:
        tests.append(coupons.c.coupon_id == c.coupon_id)
    if c.expiring_within_days is None:
        tests.append(or_(expires.is_(None), expires > scope.at_now()))
    else:
        tests += [expires > scope.at_now(), expires < scope.days_ago(-(c.expiring_within_days + 1))]
    return _exists(coupons, scope, *tests)


def _event(c: d.EventDone, scope: Scope) -> Expr:
    filters = [property_filter(events.c.properties, f, scope) for f in c.filters]
    window = _window(events.c.occurred_at, c.window, scope)
    return _counted(events, scope, c.count, events.c.name == c.name, *filters, *window)


def _segment(c: d.InSegment, scope: Scope) -> Expr:
    other = scope.segments.get(c.segment_id)
    if other is None:
        raise UnresolvedSegment(str(c.segment_id))
    return matches(other, scope)


cohort_members: Table = CohortMember.__table__  # type: ignore[assignment]


def _cohort(c: d.InCohort, scope: Scope) -> Expr:
    return exists().where(
        cohort_members.c.cohort_id == c.cohort_id,
        cohort_members.c.profile_id == profiles.c.id,
        cohort_members.c.workspace_id == scope.workspace_id,
    )


CONDITIONS: dict[type[Any], Callable[[Any, Scope], Part]] = {
    d.Member: _member,
    d.ChannelFriend: _channel_friend,
    d.MarketingConsent: _marketing_consent,
    d.NightConsent: _night_consent,
    d.Gender: _gender,
    d.AgeRange: _age,
    d.Region: _region,
    d.Trait: _trait,
    d.VisitCount: _visit_count,
    d.LastVisit: _last_visit,
    d.FirstVisit: _first_visit,
    d.SessionPageViews: _session_page_views,
    d.PageViewed: _page_viewed,
    d.ProductViewed: _product_viewed,
    d.CartItemCount: _cart_item_count,
    d.CartTotal: _cart_total,
    d.CartLastAdded: _cart_last_added,
    d.ProductInCart: _product_in_cart,
    d.LastPurchase: _last_purchase,
    d.PurchaseCount: _purchase_count,
    d.PurchaseTotal: _purchase_total,
    d.Bought: _bought,
    d.LastLogin: _last_login,
    d.CouponHeld: _coupon,
    d.EventDone: _event,
    d.InSegment: _segment,
    d.InCohort: _cohort,
}
