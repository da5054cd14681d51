"""The segment definition format: who is in a segment, as JSON.

    {"include": <node>, "exclude": [<node>, ...]}

A node is a group — `{"all": [<node>, ...]}`, `{"any": [<node>, ...]}`, `{"not": <node>}` — or a
condition, told apart by its `type`. A profile is in the segment when it matches `include` and none
of the `exclude` nodes. Relative time is counted in the workspace's timezone: "within N days" means
since local midnight N days ago (today = 0). Absolute dates are local days of the workspace.

Validation errors name the exact path of the wrong value (`body.include.all.2.days`); see
`services.segmenter.errors` for how the union tags pydantic adds to paths are taken out again.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PlainSerializer, Tag, model_validator

MAX_DAYS = 3650


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Days = Annotated[int, Field(ge=0, le=MAX_DAYS, description="Local days back from today (today = 0)")]
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Key = Annotated[str, Field(min_length=1, max_length=255)]


class Op(StrEnum):
    eq = "eq"
    ne = "ne"
    in_ = "in"
    contains = "contains"
    exists = "exists"
    gt = "gt"
    gte = "gte"
    lt = "lt"
    lte = "lte"
    before = "before"
    after = "after"


_NUMERIC_OPS = {Op.gt, Op.gte, Op.lt, Op.lte}


class PropertyFilter(Strict):
    """A test on one key of a JSON object (a profile's traits, an event's properties).

    `eq` / `ne` compare JSON values (`ne` also matches a missing key); `in` takes a list; `contains`
    finds a substring or an element of a list; `exists` takes true or false; `gt`..`lte` compare
    numbers; `before` / `after` compare dates (a day: strictly before its local midnight / from the
    next local midnight) or instants.
    """

    key: Key = Field(examples=["grade"])
    op: Op = Field(examples=["eq"])
    value: Any = Field(default=None, examples=["VIP"])

    @model_validator(mode="after")
    def _value_fits_op(self) -> Self:
        if self.op == Op.in_ and not (isinstance(self.value, list) and self.value):
            raise ValueError("`in` needs a non-empty list as `value`")
        if self.op == Op.exists and not isinstance(self.value, bool):
            raise ValueError("`exists` needs true or false as `value`")
        if self.op == Op.contains and not isinstance(self.value, str | int | float | bool):
            raise ValueError("`contains` needs a string, number or boolean as `value`")
        if self.op in _NUMERIC_OPS and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"`{self.op}` needs a number as `value`")
        if self.op in (Op.before, Op.after):
            self.value = _date_or_instant(self.value)
        if self.op in (Op.eq, Op.ne) and self.value is None:
            raise ValueError(f"`{self.op}` needs a `value` (use `exists` to test for a missing key)")
        return self


def _date_or_instant(value: Any) -> str:
    from pydantic import AwareDatetime, TypeAdapter, ValidationError

    try:
        return TypeAdapter(date).validate_python(value, strict=False).isoformat()
    except ValidationError:
        pass
    try:
        return TypeAdapter(AwareDatetime).validate_python(value).isoformat()
    except ValidationError as exc:
        raise ValueError("`before` / `after` need a date (2026-03-17) or a time with an offset") from exc


def _as_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


Amount = Annotated[
    Decimal, Field(ge=0, le=10**15), PlainSerializer(_as_number, return_type=int | float, when_used="json")
]


class Range(Strict):
    """Inclusive bounds; give at least one."""

    gte: Amount | None = None
    lte: Amount | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.gte is None and self.lte is None:
            raise ValueError("give `gte`, `lte` or both")
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise ValueError("`gte` is greater than `lte`")
        return self


class Recency(Strict):
    """`within_days` (since local midnight N days ago; today = 0) or `not_within_days` (also never)."""

    within_days: Days | None = None
    not_within_days: Days | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.within_days is None) == (self.not_within_days is None):
            raise ValueError("give exactly one of `within_days` and `not_within_days`")
        return self


class Window(Strict):
    """When: the last `days` local days (today = 0: today only), or local dates `from`..`to` (inclusive)."""

    days: Days | None = None
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.days is not None and (self.from_ or self.to):
            raise ValueError("give `days` or `from`/`to`, not both")
        if self.days is None and self.from_ is None and self.to is None:
            raise ValueError("give `days`, or `from` and/or `to`")
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("`from` is after `to`")
        return self


class DateBounds(Strict):
    """Absolute local days: `before` (strictly before that day) and/or `after` (strictly after it)."""

    before: date | None = None
    after: date | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.before is None and self.after is None:
            raise ValueError("give `before`, `after` or both")
        return self


# --- members and consent ----------------------------------------------------------------------


class Member(Strict):
    """A store member (`traits.member` is true), or not (`is_member`: false)."""

    type: Literal["member"]
    is_member: bool = True


class ChannelFriend(Strict):
    """Friend of the store's Kakao channel (`traits.kakao_channel_friend` is true), or not."""

    type: Literal["channel_friend"]
    is_friend: bool = True


class MarketingConsent(Strict):
    """Marketing consent on a channel granted (latest statement), or not granted / never given."""

    type: Literal["marketing_consent"]
    channel: Literal["sms", "kakao", "push", "email"]
    granted: bool = True


class NightConsent(Strict):
    """Consent to advertising at night granted, or not granted / never given."""

    type: Literal["night_consent"]
    granted: bool = True


# --- profile ----------------------------------------------------------------------------------


class Gender(Strict):
    """`traits.gender` is `value` (the profile import stores 남/여 as male/female)."""

    type: Literal["gender"]
    value: Literal["male", "female"]


class AgeRange(Strict):
    """Age in full years today (local), from `traits.birthdate` (YYYY-MM-DD); inclusive bounds."""

    type: Literal["age"]
    min_age: int | None = Field(default=None, ge=0, le=150)
    max_age: int | None = Field(default=None, ge=0, le=150)

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.min_age is None and self.max_age is None:
            raise ValueError("give `min_age`, `max_age` or both")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("`min_age` is greater than `max_age`")
        return self


class Region(Strict):
    """`traits.region` starts with one of `regions` ("서울" matches "서울특별시 강남구")."""

    type: Literal["region"]
    regions: list[Key] = Field(min_length=1, max_length=100)


class Trait(PropertyFilter):
    """Any profile trait: `{"type": "trait", "key": "grade", "op": "eq", "value": "VIP"}`."""

    type: Literal["trait"]


# --- visits -----------------------------------------------------------------------------------


class VisitCount(Range):
    type: Literal["visit_count"]


class LastVisit(Recency):
    """Latest activity on the site or app within / not within N days."""

    type: Literal["last_visit"]


class FirstVisit(Strict):
    """First visit within N days (new visitors)."""

    type: Literal["first_visit"]
    within_days: Days


class SessionPageViews(Range):
    """Pages viewed in the latest visit."""

    type: Literal["session_page_views"]


# --- content ----------------------------------------------------------------------------------


class PageViewed(Strict):
    """Pages (events of type `page`, `properties.url`) viewed at least `count` times in `window`.

    `match`: `exact`, `prefix`, or `pattern` where `*` stands for any run of characters.
    """

    type: Literal["page_viewed"]
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    match: Literal["exact", "prefix", "pattern"] = "exact"
    count: Count = 1
    window: Window | None = None


class ProductViewed(Strict):
    """A product, category or brand viewed (last viewed within `within_days`, if given)."""

    type: Literal["product_viewed"]
    product_id: Key | None = None
    category: Key | None = None
    brand: Key | None = None
    within_days: Days | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if not (self.product_id or self.category or self.brand):
            raise ValueError("give `product_id`, `category` or `brand`")
        return self


# --- cart -------------------------------------------------------------------------------------


class CartItemCount(Range):
    type: Literal["cart_item_count"]


class CartTotal(Range):
    type: Literal["cart_total"]


class CartLastAdded(Strict):
    """Last add to cart within N days, or relative to absolute local days."""

    type: Literal["cart_last_added"]
    within_days: Days | None = None
    before: date | None = None
    after: date | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.within_days is None and self.before is None and self.after is None:
            raise ValueError("give `within_days`, `before` or `after`")
        return self


class ProductInCart(Strict):
    type: Literal["product_in_cart"]
    product_id: Key


# --- purchases --------------------------------------------------------------------------------


class LastPurchase(Recency):
    type: Literal["last_purchase"]


class PurchaseCount(Range):
    type: Literal["purchase_count"]


class PurchaseTotal(Range):
    """Total paid, refunds subtracted, in the workspace currency."""

    type: Literal["purchase_total"]


class Bought(Strict):
    """An `Order Completed` whose `properties.products[]` has the product or category, in `window`."""

    type: Literal["bought"]
    product_id: Key | None = None
    category: Key | None = None
    window: Window | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if not (self.product_id or self.category):
            raise ValueError("give `product_id` or `category`")
        return self


# --- login, coupons, any event, other segments ------------------------------------------------


class LastLogin(DateBounds):
    """Last `Signed In` / `Signed Up` before / after a local day (never logged in: no match)."""

    type: Literal["last_login"]


class CouponHeld(Strict):
    """Holds a coupon (`coupon_id`, or any) not yet expired, expiring within N days if given."""

    type: Literal["coupon"]
    coupon_id: Key | None = None
    expiring_within_days: Days | None = None


class EventDone(Strict):
    """Any tracked event (by name) with property filters, at least `count` times in `window`."""

    type: Literal["event"]
    name: Key = Field(examples=["Product Added"])
    filters: list[PropertyFilter] = Field(default_factory=list, max_length=20)
    count: Count = 1
    window: Window | None = None


class InSegment(Strict):
    """Member of another saved segment of the workspace (evaluated from its definition)."""

    type: Literal["segment"]
    segment_id: uuid.UUID


class InCohort(Strict):
    """Member of a static cohort of the workspace (an uploaded list: services/segmenter/cohorts.py)."""

    type: Literal["cohort"]
    cohort_id: uuid.UUID


Condition = Annotated[
    Member
    | ChannelFriend
    | MarketingConsent
    | NightConsent
    | Gender
    | AgeRange
    | Region
    | Trait
    | VisitCount
    | LastVisit
    | FirstVisit
    | SessionPageViews
    | PageViewed
    | ProductViewed
    | CartItemCount
    | CartTotal
    | CartLastAdded
    | ProductInCart
    | LastPurchase
    | PurchaseCount
    | PurchaseTotal
    | Bought
    | LastLogin
    | CouponHeld
    | EventDone
    | InSegment
    | InCohort,
    Field(discriminator="type"),
]

MAX_CHILDREN = 100


class AllOf(Strict):
    all: list[Node] = Field(min_length=1, max_length=MAX_CHILDREN)


class AnyOf(Strict):
    any: list[Node] = Field(min_length=1, max_length=MAX_CHILDREN)


class NotOf(Strict):
    not_: Node = Field(alias="not")


GROUP_TAGS = ("all", "any", "not")
CONDITION_TAG = "condition"


def _node_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = [tag for tag in GROUP_TAGS if tag in value]
        return keys[0] if len(keys) == 1 else CONDITION_TAG
    if isinstance(value, AllOf):
        return "all"
    if isinstance(value, AnyOf):
        return "any"
    return "not" if isinstance(value, NotOf) else CONDITION_TAG


Node = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[Condition, Tag(CONDITION_TAG)],
    Discriminator(_node_kind),
]


class Definition(Strict):
    """Who is in a segment: whoever matches `include` and none of `exclude`."""

    include: Node
    exclude: list[Node] = Field(default_factory=list, max_length=MAX_CHILDREN)


AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()
Definition.model_rebuild()


def condition_types() -> list[str]:
    """Every `type` a condition may have (no field of any condition is named like one of them)."""
    union = get_args(Condition)[0]
    return [get_args(member.model_fields["type"].annotation)[0] for member in get_args(union)]


UNION_TAGS = frozenset([*GROUP_TAGS, CONDITION_TAG, *condition_types()])


def iter_conditions(node: Any, path: tuple[str | int, ...]) -> list[tuple[Any, tuple[str | int, ...]]]:
    """Every condition under `node`, with its path (as it appears in the JSON)."""
    if isinstance(node, AllOf):
        return [c for i, child in enumerate(node.all) for c in iter_conditions(child, (*path, "all", i))]
    if isinstance(node, AnyOf):
        return [c for i, child in enumerate(node.any) for c in iter_conditions(child, (*path, "any", i))]
    if isinstance(node, NotOf):
        return iter_conditions(node.not_, (*path, "not"))
    return [(node, path)]


def conditions_of(definition: Definition) -> list[tuple[Any, tuple[str | int, ...]]]:
    found = iter_conditions(definition.include, ("include",))
    for i, node in enumerate(definition.exclude):
        found += iter_conditions(node, ("exclude", i))
    return found
