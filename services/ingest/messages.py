"""The fast path of a batch's validation: the tracking messages as msgspec Structs.

schemas.py is the contract (OpenAPI, and the errors a bad message is answered with). Validating a
100-message batch with it cost ~2.8 us a message, most of a request's parsing; msgspec checks the
same dicts against these Structs in ~1 us (services/ingest/payload.py, `_all_valid`).

The fast path accepts a message only where the contract gives the same values, and otherwise says
no; payload.py then validates each message with the contract, as before. So these Structs are
stricter than schemas.py, never looser:
- no number is taken for an id (the contract turns it into a string), and only RFC 3339 times;
- an id with white space around it is refused (the contract strips it): see `needs_contract`;
- the snake_case names the contract also accepts (`user_id` for `userId`) are caught in `snake_*`
  fields, and a message that uses one is refused: otherwise the value would be silently dropped.
One difference is kept: a time with more than 6 decimals (the .NET SDK sends 7) is rounded to the
microsecond, where the contract cuts the rest off; the two are at most 1 us apart.

Both kinds of message have the same attributes (`type`, `user_id`, `properties`, ...): the rest of
ingest (services/ingest/service.py) reads either. tests/ingest/test_messages.py holds the two to
the same fields and the same values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

Id = Annotated[str, Meta(min_length=1, max_length=255)]
Name = Annotated[str, Meta(min_length=1, max_length=255)]


# gc=False: a message holds only strings, times and the dicts it was given, never itself, so the
# cyclic collector need not track the thousands made a second
class _Message(Struct, rename="camel", tag_field="type", kw_only=True, gc=False):
    user_id: Id | None = None
    anonymous_id: Id | None = None
    message_id: Id | None = None
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    context: dict[str, Any] = {}
    snake_user_id: Any | UnsetType = field(name="user_id", default=UNSET)
    snake_anonymous_id: Any | UnsetType = field(name="anonymous_id", default=UNSET)
    snake_message_id: Any | UnsetType = field(name="message_id", default=UNSET)
    snake_sent_at: Any | UnsetType = field(name="sent_at", default=UNSET)


class Track(_Message, tag="track"):
    type: ClassVar[Literal["track"]] = "track"
    event: Name
    properties: dict[str, Any] = {}


class Identify(_Message, tag="identify"):
    type: ClassVar[Literal["identify"]] = "identify"
    traits: dict[str, Any] = {}


class Page(_Message, tag="page"):
    type: ClassVar[Literal["page"]] = "page"
    name: Name | None = None
    category: Name | None = None
    properties: dict[str, Any] = {}


class Screen(_Message, tag="screen"):
    type: ClassVar[Literal["screen"]] = "screen"
    name: Name | None = None
    category: Name | None = None
    properties: dict[str, Any] = {}


class Group(_Message, tag="group"):
    type: ClassVar[Literal["group"]] = "group"
    group_id: Id
    traits: dict[str, Any] = {}
    snake_group_id: Any | UnsetType = field(name="group_id", default=UNSET)


class Alias(_Message, tag="alias"):
    type: ClassVar[Literal["alias"]] = "alias"
    previous_id: Id
    user_id: Id  # required here, as in the contract
    snake_previous_id: Any | UnsetType = field(name="previous_id", default=UNSET)


FastMessage = Track | Identify | Page | Screen | Group | Alias
FAST_BATCH = list[FastMessage]


def needs_contract(message: FastMessage) -> bool:
    """True when the contract could read this message otherwise than the Struct did: a snake_case
    name, or an id it would strip. Also true without any shopper id (the contract's error)."""
    if not (message.user_id or message.anonymous_id):
        return True
    if (
        message.snake_user_id is not UNSET
        or message.snake_anonymous_id is not UNSET
        or message.snake_message_id is not UNSET
        or message.snake_sent_at is not UNSET
        or _stripped(message.user_id)
        or _stripped(message.anonymous_id)
        or _stripped(message.message_id)
    ):
        return True
    if isinstance(message, Group):
        return message.snake_group_id is not UNSET or _stripped(message.group_id)
    if isinstance(message, Alias):
        return message.snake_previous_id is not UNSET or _stripped(message.previous_id)
    return False


def _stripped(value: str | None) -> bool:
    """Whether the contract (`strip_whitespace`) would change this id. `str.strip` hands back the
    same object when there is nothing to strip, and it strips a superset of what pydantic does."""
    return value is not None and value.strip() is not value
