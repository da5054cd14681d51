"""The batch's fast path (services/ingest/messages.py) against the contract (schemas.py): the same
fields, and for every message either the very values the contract gives or a refusal, after which
the contract validates it. No database: these are pure functions."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.ingest import messages, payload, schemas
from services.ingest.payload import MESSAGE_TYPES
from services.ingest.schemas import Id

PAIRS: list[tuple[type[BaseModel], type[messages.FastMessage]]] = [
    (schemas.TrackMessage, messages.Track),
    (schemas.IdentifyMessage, messages.Identify),
    (schemas.PageMessage, messages.Page),
    (schemas.ScreenMessage, messages.Screen),
    (schemas.GroupMessage, messages.Group),
    (schemas.AliasMessage, messages.Alias),
]

TRACK = {
    "type": "track",
    "userId": "user-1004",
    "event": "Product Added",
    "properties": {"product_id": "p-7", "name": "수분크림", "price": 28000, "quantity": 2},
    "messageId": "0b6a7c1e-6f1d-4c9a-9a43-3f9f1c2b7d10",
    "timestamp": "2026-11-23T09:59:58.123+09:00",
    "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "locale": "ko-KR"},
}

# Messages the fast path takes as they are
FAST: list[dict[str, Any]] = [
    TRACK,
    {**TRACK, "timestamp": "2026-11-23T00:59:58Z", "sentAt": "2026-11-23T01:00:00Z"},
    {**TRACK, "timestamp": "2026-11-23T09:59:58"},  # no zone: naive in both
    {**TRACK, "userId": None, "anonymousId": "anon-7f3a", "integrations": {"All": True}},
    {"type": "identify", "userId": "user-1004", "traits": {"name": "김민지", "phone": "010-1234-5678"}},
    {"type": "identify", "anonymousId": "anon-1", "context": {"traits": {"email": "minji@example.com"}}},
    {"type": "page", "userId": "u-1", "name": "기획전", "category": "sale", "properties": {"url": "/sale"}},
    {"type": "page", "anonymousId": "a-1"},
    {"type": "screen", "userId": "u-1", "name": "장바구니"},
    {"type": "group", "userId": "u-1", "groupId": "company-9", "traits": {"plan": "vip"}},
    {"type": "alias", "userId": "user-1004", "previousId": "anon-7f3a"},
]

# Messages the fast path must leave to the contract: it would read them otherwise, or they are bad
CONTRACT: list[dict[str, Any]] = [
    {**TRACK, "userId": " user-1004 "},  # stripped by the contract
    {**TRACK, "messageId": "m-1\u3000"},  # an ideographic space is white space too
    {**TRACK, "userId": 1004},  # a number made a string
    {**TRACK, "user_id": "user-9", "userId": None, "anonymousId": "anon-1"},  # snake_case accepted
    {**TRACK, "message_id": "m-snake"},
    {**TRACK, "anonymous_id": "anon-snake"},
    {**TRACK, "sent_at": "2026-11-23T01:00:00Z"},
    {**TRACK, "timestamp": 1763859598},  # a Unix time
    {**TRACK, "timestamp": "2026-11-23"},  # a date alone
    {"type": "group", "userId": "u-1", "group_id": "company-9"},
    {"type": "group", "userId": "u-1", "groupId": " company-9"},
    {"type": "alias", "userId": "user-1004", "previous_id": "anon-7f3a"},
    {"type": "alias", "userId": "user-1004", "previousId": "anon-7f3a "},
    # invalid in both: the contract names the field
    {**TRACK, "userId": None},
    {**TRACK, "event": ""},
    {**TRACK, "userId": "   "},
    {**TRACK, "properties": [1, 2]},
    {**TRACK, "timestamp": "yesterday"},
    {"type": "purchase", "userId": "u-1"},
    {"type": "alias", "anonymousId": "anon-1", "previousId": "x"},
    {**TRACK, "context": None},
]


def _encoded_names(struct: type[messages.FastMessage]) -> set[str]:
    return set(struct.__struct_encode_fields__)


@pytest.mark.parametrize(("model", "struct"), PAIRS)
def test_each_struct_has_the_contracts_fields_and_catches_their_snake_case_names(model, struct):
    camel = {field.alias or name for name, field in model.model_fields.items() if name != "type"}
    snake = {name for name, field in model.model_fields.items() if field.alias and field.alias != name}
    assert _encoded_names(struct) == camel | snake
    assert struct.__struct_config__.tag == model.model_fields["type"].default


def _attributes(message: Any) -> dict[str, Any]:
    names = {n for model, _ in PAIRS for n in model.model_fields}
    return {n: getattr(message, n) for n in names if hasattr(message, n)}


def _contract(message: dict[str, Any]) -> Any:
    return payload.validate_message(message, None, ("body", "batch", 0))


@pytest.mark.parametrize("message", FAST)
def test_the_fast_path_takes_a_plain_message_with_the_contracts_values(message):
    [fast] = payload.parse_batch({"batch": [message]}).messages

    assert isinstance(fast, messages.FastMessage)
    contract = _contract(message)
    assert isinstance(contract, BaseModel)
    assert _attributes(fast) == _attributes(contract)
    assert fast.type == contract.type


@pytest.mark.parametrize("message", CONTRACT)
def test_the_contract_reads_what_the_fast_path_would_read_otherwise(message):
    parsed = payload.parse_batch({"batch": [TRACK, message]})
    contract = _contract(message)

    assert not any(isinstance(m, messages.FastMessage) for m in parsed.messages)
    if isinstance(contract, list):  # invalid: reported by index, the good message kept
        assert parsed.rejected == [1]
        assert [e.model_dump() for e in parsed.errors] == [
            {**e.model_dump(), "field": e.field.replace("batch.0", "batch.1")} for e in contract
        ]
        assert len(parsed.messages) == 1
    else:
        assert _attributes(parsed.messages[1]) == _attributes(contract)


def test_a_time_with_more_than_six_decimals_is_rounded_where_the_contract_cuts_it():
    """The one difference kept (services/ingest/messages.py): at most 1 us."""
    message = {**TRACK, "timestamp": "2026-11-23T09:59:58.9999996Z"}
    [fast] = payload.parse_batch({"batch": [message]}).messages
    contract = _contract(message)

    assert isinstance(fast, messages.FastMessage) and isinstance(contract, BaseModel)
    assert fast.timestamp - contract.timestamp == timedelta(microseconds=1)
    assert {**_attributes(fast), "timestamp": None} == {**_attributes(contract), "timestamp": None}


def test_every_character_the_contract_strips_from_an_id_python_strips_too():
    """`needs_contract` finds ids the contract would strip with `str.strip`: so that must strip at
    least every character pydantic does."""
    contract_id = TypeAdapter(Id)
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:  # surrogates: never in a JSON string orjson reads
            continue
        character = chr(code)
        try:
            stripped = contract_id.validate_python(f"x{character}") != f"x{character}"
        except ValidationError:
            stripped = True
        if stripped:
            assert f"x{character}".strip() != f"x{character}", hex(code)


def test_the_message_types_are_the_contracts():
    assert {m.model_fields["type"].default for m in MESSAGE_TYPES.values()} == {
        s.__struct_config__.tag for _, s in PAIRS
    }
