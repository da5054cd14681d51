"""CSV profile import: a store's member export becomes one identify message per row, recorded
through the tracking write path (`service.record_messages`), so identities, trait merge, consents,
the outbox and aggregates apply exactly as they do to tracked identifies.

- Encodings: UTF-8 (with or without BOM) and CP949 / EUC-KR (Korean Excel); detected or named.
- Headers: Korean and English spellings map to known fields (`COLUMNS`); any other column becomes a
  custom trait under its header. A `user_id` column is required.
- Each row is checked on its own: a bad row (missing user_id, malformed phone, email or date, a
  consent that is not yes or no, wrong column count) is reported with its row number and column,
  and the good rows are kept.
- Each row's messageId is derived from the file's SHA-256 and the row number, so uploading the same
  file again records nothing twice, and a retry after a failed upload records only what is missing.
- Rows are recorded CHUNK_ROWS per transaction (see `record_members`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest.consents import parse_granted
from services.ingest.schemas import IdentifyMessage
from services.ingest.service import record_messages
from shared.clock import zone
from shared.db import session_scope
from shared.errors import FieldError, ValidationFailed

MAX_BYTES = 20 * 1024 * 1024
CHUNK_ROWS = 1000
MAX_LISTED_ERRORS = 1000
MAX_ID_LENGTH = 255

# the explicit `encoding` a caller may name -> the codec used ("utf-8" also drops a BOM)
ENCODINGS = {"utf-8": "utf-8-sig", "utf-8-sig": "utf-8-sig", "cp949": "cp949", "euc-kr": "cp949"}

# field -> the header spellings that mean it; matching ignores case, spaces, "_" and "-"
COLUMNS: dict[str, tuple[str, ...]] = {
    "user_id": ("회원ID", "회원아이디", "아이디", "user_id", "userId", "member_id"),
    "name": ("이름", "회원명", "성명", "name"),
    "phone": ("휴대폰", "휴대폰번호", "휴대전화", "핸드폰번호", "phone", "mobile"),
    "email": ("이메일", "이메일주소", "email"),
    "gender": ("성별", "gender"),
    "birthdate": ("생년월일", "생일", "birthdate", "birthday"),
    "region": ("지역", "region"),
    "sms_consent": ("SMS수신동의", "문자수신동의", "sms_consent"),
    "email_consent": ("이메일수신동의", "email_consent"),
    "kakao_consent": ("카카오수신동의", "카카오톡수신동의", "kakao_consent"),
    "push_consent": ("앱푸시수신동의", "푸시수신동의", "push_consent"),
    "night_consent": ("야간수신동의", "야간광고수신동의", "night_consent"),
    "signed_up_at": ("가입일", "가입일시", "signed_up_at", "signedUpAt"),
}
CONSENT_FIELDS = {f"{topic}_consent": topic for topic in ("sms", "email", "kakao", "push", "night")}

GENDERS = {"남": "male", "남자": "male", "m": "male", "male": "male"} | {
    "여": "female",
    "여자": "female",
    "f": "female",
    "female": "female",
}

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"0\d{8,10}")
_DATE = re.compile(
    r"(\d{4})\s*[-./]\s*(\d{1,2})\s*[-./]\s*(\d{1,2})\.?(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


def _key(header: str) -> str:
    return re.sub(r"[\s_\-]", "", header).lower()


_FIELD_OF_HEADER = {_key(name): field for field, names in COLUMNS.items() for name in names}


@dataclass(frozen=True)
class RowError:
    row: int  # as a spreadsheet numbers it: the header is row 1
    column: str | None  # the header as written in the file
    message: str


@dataclass(frozen=True)
class Member:
    """A good row: who, and the traits to merge into their profile."""

    row: int
    user_id: str
    traits: dict[str, Any]


@dataclass
class ParsedFile:
    sha256: str
    members: list[Member] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    skipped: int = 0  # rows left out because of an error

    @property
    def rows(self) -> int:
        return len(self.members) + self.skipped


@dataclass(frozen=True)
class Column:
    index: int
    header: str
    field: str | None  # None: a custom trait under `header`


@dataclass(frozen=True)
class ImportResult:
    rows: int
    imported: int
    duplicates: int
    skipped: int
    errors: list[RowError]


# -- the file ------------------------------------------------------------------------------------


def _unreadable(message: str) -> ValidationFailed:
    return ValidationFailed(
        message, errors=[FieldError(field="body.file", message=message, type="value_error")]
    )


def decode(raw: bytes, encoding: str | None) -> str:
    """The file as text: the named encoding, or UTF-8 (BOM or not) and then CP949."""
    if encoding is not None:
        codec = ENCODINGS.get(encoding.strip().lower().replace("_", "-"))
        if codec is None:
            message = f"encoding must be one of: {', '.join(ENCODINGS)}"
            raise ValidationFailed(
                message, errors=[FieldError(field="body.encoding", message=message, type="enum")]
            )
        candidates = [codec]
    else:
        candidates = ["utf-8-sig", "cp949"]
    for codec in candidates:
        try:
            text = codecs.decode(raw, codec)
        except UnicodeDecodeError:
            continue
        return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
    raise _unreadable(f"The file is not valid {' or '.join(candidates)} text; save it as UTF-8 or CP949 CSV")


class _UnreadableRecord(Exception):
    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of each non-blank record; a malformed record ends the reading."""
    reader = csv.reader(io.StringIO(text, newline=""))
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _UnreadableRecord(number + 1, str(exc)) from exc
        number += 1
        if any(cell.strip() for cell in cells):
            yield number, cells


def columns_of(header: Sequence[str]) -> list[Column]:
    """The header's columns, each mapped to a known field once (a repeat is a custom trait)."""
    columns: list[Column] = []
    seen: set[str] = set()
    for index, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff")
        if not name:
            continue
        known = _FIELD_OF_HEADER.get(_key(name))
        if known in seen:
            known = None
        if known is not None:
            seen.add(known)
        columns.append(Column(index, name, known))
    if "user_id" not in seen:
        accepted = ", ".join(COLUMNS["user_id"])
        raise _unreadable(f"The file has no user_id column (read comma-separated); name one of: {accepted}")
    return columns


# -- one value -----------------------------------------------------------------------------------


class BadValue(ValueError):
    pass


def phone(value: str) -> str:
    """Digits only, Korean style: 010-1234-5678, +82 10-1234-5678 and 1012345678 (Excel dropped
    the leading zero) all become 01012345678."""
    digits = re.sub(r"\D", "", value)
    if digits.startswith("82") and not value.strip().startswith("0"):
        digits = "0" + digits[2:]
    elif digits.startswith("1") and len(digits) in (9, 10):
        digits = "0" + digits
    if not _PHONE.fullmatch(digits):
        raise BadValue("not a phone number: expected 9 to 11 digits starting with 0, e.g. 010-1234-5678")
    return digits


def email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise BadValue("not an email address, e.g. minji@example.com")
    return value


def _date_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    match = _DATE.fullmatch(value)
    if match is None:
        raise BadValue("not a date: expected YYYY-MM-DD (1995.03.07 and 19950307 work too)")
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise BadValue(f"not a date: {exc}") from exc


def birthdate(value: str) -> str:
    parsed = _date_time(value)
    if parsed.time() != datetime.min.time() or parsed.tzinfo is not None:
        raise BadValue("a birthdate is a day without a time, e.g. 1995-03-07")
    return date(parsed.year, parsed.month, parsed.day).isoformat()


def signed_up_at(value: str, tz: ZoneInfo) -> str:
    """ISO 8601 with an offset; a time without one is in the workspace timezone."""
    parsed = _date_time(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).isoformat()


def consent(value: str) -> bool:
    granted = parse_granted(value)
    if granted is None:
        raise BadValue("not a consent: expected Y/N, 예/아니오, 동의/거부, true/false or 1/0")
    return granted


def gender(value: str) -> str:
    return GENDERS.get(value.lower(), value)


# -- one row -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowContext:
    columns: list[Column]
    width: int  # cells in the header
    tz: ZoneInfo
    consents_at: str  # the import time, ISO


def _known_trait(column_field: str, value: str, tz: ZoneInfo) -> Any:
    if column_field in CONSENT_FIELDS:
        return consent(value)
    if column_field == "phone":
        return phone(value)
    if column_field == "email":
        return email(value)
    if column_field == "birthdate":
        return birthdate(value)
    if column_field == "signed_up_at":
        return signed_up_at(value, tz)
    if column_field == "gender":
        return gender(value)
    return value


def _user_id(value: str) -> str:
    if not value:
        raise BadValue("user_id is required")
    if len(value) > MAX_ID_LENGTH:
        raise BadValue(f"user_id may be at most {MAX_ID_LENGTH} characters")
    return value


def parse_row(row: int, cells: Sequence[str], context: RowContext) -> Member | list[RowError]:
    """A good row's member, or every error the row has."""
    if len(cells) != context.width:
        return [RowError(row, None, f"expected {context.width} columns, found {len(cells)}")]
    errors: list[RowError] = []
    custom: dict[str, Any] = {}
    known: dict[str, Any] = {}
    for column in context.columns:
        value = cells[column.index].strip()
        try:
            if column.field == "user_id":
                known["user_id"] = _user_id(value)
            elif not value:
                continue
            elif column.field is None:
                custom[column.header] = value
            else:
                known[column.field] = _known_trait(column.field, value, context.tz)
        except BadValue as exc:
            errors.append(RowError(row, column.header, str(exc)))
    if errors:
        return errors
    return Member(row, known.pop("user_id"), {**custom, **_traits(known, context.consents_at)})


def _traits(known: dict[str, Any], consents_at: str) -> dict[str, Any]:
    """Known fields as traits; consents as `{"consents": {"sms": true, ...}, "consents_at": ...}`."""
    given = {topic: known.pop(name) for name, topic in CONSENT_FIELDS.items() if name in known}
    if given:
        known |= {"consents": given, "consents_at": consents_at}
    return known


def _row_context(header: Sequence[str], timezone: str, now: datetime) -> RowContext:
    tz = zone(timezone)
    return RowContext(columns_of(header), len(header), tz, now.astimezone(tz).isoformat())


def parse_file(raw: bytes, encoding: str | None, *, timezone: str, now: datetime) -> ParsedFile:
    """Decode and check every row (CPU only: run it off the event loop for big files)."""
    parsed = ParsedFile(sha256=hashlib.sha256(raw).hexdigest())
    records = _records(decode(raw, encoding))
    try:
        header = next(records, None)
    except _UnreadableRecord as exc:
        raise _unreadable(f"The header row is not valid CSV: {exc.reason}") from exc
    if header is None:
        raise _unreadable("The file is empty: expected a header row with a user_id column")
    context = _row_context(header[1], timezone, now)
    try:
        for row, cells in records:
            _add(parsed, parse_row(row, cells, context))
    except _UnreadableRecord as exc:
        _add(parsed, [RowError(exc.row, None, f"not valid CSV ({exc.reason}); reading stopped here")])
    return parsed


def _add(parsed: ParsedFile, outcome: Member | list[RowError]) -> None:
    if isinstance(outcome, Member):
        parsed.members.append(outcome)
        return
    parsed.skipped += 1
    room = MAX_LISTED_ERRORS - len(parsed.errors)
    parsed.errors += outcome[: max(room, 0)]


# -- recording -----------------------------------------------------------------------------------


def message_id(sha256: str, row: int) -> str:
    """The same row of the same file always gets the same messageId: a re-upload is a duplicate."""
    return f"import-{sha256[:32]}-{row}"


def to_message(member: Member, sha256: str) -> IdentifyMessage:
    return IdentifyMessage(
        user_id=member.user_id,
        message_id=message_id(sha256, member.row),
        traits=member.traits,
        context={"import": {"sha256": sha256, "row": member.row}},
    )


async def record_members(
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace_id: uuid.UUID,
    parsed: ParsedFile,
    *,
    timezone: str,
    received_at: datetime,
) -> ImportResult:
    """Record the good rows, CHUNK_ROWS per transaction (the ingest worker publishes their events).

    One transaction per chunk, not per file: identity locks are taken per user id and held until
    commit, and a whole export's worth of them (tens of thousands) exhausts PostgreSQL's lock table
    and would block tracking for those shoppers meanwhile. If a later chunk fails, the earlier ones
    stay recorded; uploading the same file again records only what is missing (same messageIds).
    """
    imported = duplicates = 0
    for start in range(0, len(parsed.members), CHUNK_ROWS):
        messages = [to_message(m, parsed.sha256) for m in parsed.members[start : start + CHUNK_ROWS]]
        async with session_scope(sessionmaker) as session:
            recorded = await record_messages(
                session, workspace_id, messages, timezone=timezone, received_at=received_at
            )
        imported += recorded.accepted - recorded.duplicates
        duplicates += recorded.duplicates
    return ImportResult(
        rows=parsed.rows,
        imported=imported,
        duplicates=duplicates,
        skipped=parsed.skipped,
        errors=parsed.errors,
    )
