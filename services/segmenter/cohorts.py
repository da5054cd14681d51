"""Cohorts: static lists of a workspace's profiles, from a store's member CSV or a list of user ids,
usable in definitions (`{"type": "cohort", "cohort_id": ...}`).

CSV: UTF-8 (with or without BOM) or CP949 / EUC-KR (Korean Excel), detected or named. A row names
its shopper by `user_id` (회원ID, 아이디, ...), or else `phone` (휴대폰, ...) or `email` (이메일, ...);
the first of those columns with a value in the row is the one matched. A row that names nobody, names
them malformed, or names no profile of the workspace is reported with its row number and column;
the good rows are kept. A phone matches the profile trait `phone` by its digits, an email the trait
`email` ignoring case; where several profiles share a phone or an email, all of them are added.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.segmenter import repository
from services.segmenter.models import Cohort
from shared.clock import Clock
from shared.errors import Conflict, FieldError, NotFound, ValidationFailed

MAX_BYTES = 20 * 1024 * 1024
MAX_LISTED_ERRORS = 1000
ENCODINGS = {"utf-8": "utf-8-sig", "utf-8-sig": "utf-8-sig", "cp949": "cp949", "euc-kr": "cp949"}

KINDS = ("user_id", "phone", "email")  # matched in this order of preference within a row
COLUMNS: dict[str, tuple[str, ...]] = {
    "user_id": ("회원ID", "회원아이디", "아이디", "user_id", "userId", "member_id"),
    "phone": ("휴대폰", "휴대폰번호", "휴대전화", "핸드폰번호", "전화번호", "phone", "mobile"),
    "email": ("이메일", "이메일주소", "email"),
}

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"0\d{8,10}")


def _key(header: str) -> str:
    return re.sub(r"[\s_\-]", "", header).lower()


_KIND_OF_HEADER = {_key(name): kind for kind, names in COLUMNS.items() for name in names}


@dataclass(frozen=True)
class RowError:
    row: int  # as a spreadsheet numbers it: the header is row 1 (for a JSON list: the index)
    column: str | None
    message: str


@dataclass(frozen=True)
class Wanted:
    """One row's identifier."""

    row: int
    kind: str
    value: str
    column: str


@dataclass
class ParsedList:
    wanted: list[Wanted] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0


@dataclass(frozen=True)
class CohortImport:
    cohort: Cohort
    rows: int
    matched: int  # rows that named a profile
    skipped: int
    errors: list[RowError]


def _invalid(where: str, message: str, kind: str = "value_error") -> ValidationFailed:
    return ValidationFailed(message, errors=[FieldError(field=where, message=message, type=kind)])


def decode(raw: bytes, encoding: str | None) -> str:
    """The file as text: the named encoding, or UTF-8 (BOM or not) and then CP949."""
    if encoding is not None:
        codec = ENCODINGS.get(encoding.strip().lower().replace("_", "-"))
        if codec is None:
            raise _invalid("body.encoding", f"encoding must be one of: {', '.join(ENCODINGS)}", "enum")
        candidates = [codec]
    else:
        candidates = ["utf-8-sig", "cp949"]
    for codec in candidates:
        try:
            return codecs.decode(raw, codec).replace("\x00", "\ufffd")
        except UnicodeDecodeError:
            continue
    raise _invalid(
        "body.file", f"The file is not valid {' or '.join(candidates)} text; save it as UTF-8 or CP949 CSV"
    )


def phone(value: str) -> str:
    """Digits only: 010-1234-5678, +82 10-1234-5678 and 1012345678 all become 01012345678."""
    digits = re.sub(r"\D", "", value)
    if digits.startswith("82") and not value.strip().startswith("0"):
        digits = "0" + digits[2:]
    elif digits.startswith("1") and len(digits) in (9, 10):
        digits = "0" + digits
    if not _PHONE.fullmatch(digits):
        raise ValueError("not a phone number: expected 9 to 11 digits starting with 0, e.g. 010-1234-5678")
    return digits


def _normalized(kind: str, value: str) -> str:
    if kind == "phone":
        return phone(value)
    if kind == "email" and not _EMAIL.fullmatch(value):
        raise ValueError("not an email address, e.g. minji@example.com")
    if len(value) > 255:
        raise ValueError(f"{kind} may be at most 255 characters")
    return value


def parse_csv(raw: bytes, encoding: str | None) -> ParsedList:
    """Each row's identifier, or its error (CPU only: run it off the event loop for big files)."""
    reader = csv.reader(io.StringIO(decode(raw, encoding), newline=""))
    parsed = ParsedList()
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _invalid("body.file", f"The header row is not valid CSV: {exc}") from exc
    if header is None:
        raise _invalid("body.file", "The file is empty: expected a header row")
    columns = [
        (index, name.strip().lstrip("\ufeff"), _KIND_OF_HEADER.get(_key(name.strip().lstrip("\ufeff"))))
        for index, name in enumerate(header)
    ]
    by_kind = {kind: [(i, name) for i, name, k in columns if k == kind][:1] for kind in KINDS}
    if not any(by_kind.values()):
        names = ", ".join(COLUMNS["user_id"][:3] + COLUMNS["phone"][:2] + COLUMNS["email"][:1])
        raise _invalid("body.file", f"The file has no user_id, phone or email column; name one like: {names}")
    number = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.rows += 1
            parsed.errors.append(RowError(number + 1, None, f"not valid CSV ({exc}); reading stopped here"))
            break
        number += 1
        if not any(cell.strip() for cell in cells):
            continue
        parsed.rows += 1
        _read_row(parsed, number, cells, by_kind)
    return parsed


def _read_row(
    parsed: ParsedList, number: int, cells: Sequence[str], by_kind: dict[str, list[tuple[int, str]]]
) -> None:
    for kind in KINDS:
        for index, column in by_kind[kind]:
            value = cells[index].strip() if index < len(cells) else ""
            if not value:
                continue
            try:
                parsed.wanted.append(Wanted(number, kind, _normalized(kind, value), column))
            except ValueError as exc:
                parsed.errors.append(RowError(number, column, str(exc)))
            return
    parsed.errors.append(RowError(number, None, "the row has no user_id, phone or email"))


def parse_user_ids(user_ids: Sequence[str]) -> ParsedList:
    """A JSON list of user ids (rows are the list's indexes)."""
    return ParsedList(
        wanted=[Wanted(i, "user_id", u, "user_ids") for i, u in enumerate(user_ids)], rows=len(user_ids)
    )


async def _require_free_name(session: AsyncSession, workspace_id: uuid.UUID, name: str) -> None:
    if await repository.cohort_name_taken(session, workspace_id, name):
        raise Conflict(f"A cohort named {name!r} exists already")


async def create_cohort(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    clock: Clock,
    *,
    name: str,
    description: str | None,
    source: str,
    parsed: ParsedList,
) -> CohortImport:
    """Save the cohort with the profiles its rows name; rows naming nobody are reported."""
    await _require_free_name(session, workspace_id, name)
    cohort = Cohort(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        name=name,
        description=description,
        source=source,
        member_count=0,
        created_at=clock.now(),
    )
    session.add(cohort)
    await session.flush()
    found: dict[int, list[uuid.UUID]] = {}
    for kind in KINDS:
        wanted = [w for w in parsed.wanted if w.kind == kind]
        matches = await repository.match_profiles(
            session, workspace_id, kind, [w.row for w in wanted], [w.value for w in wanted]
        )
        for row, profile_id in matches:
            found.setdefault(row, []).append(profile_id)
    errors = list(parsed.errors)
    errors += [
        RowError(w.row, w.column, f"no profile with this {w.kind} in the workspace")
        for w in parsed.wanted
        if w.row not in found
    ]
    errors.sort(key=lambda e: e.row)
    cohort.member_count = await repository.add_cohort_members(
        session, workspace_id, cohort.id, [p for ids in found.values() for p in ids]
    )
    await session.flush()
    return CohortImport(
        cohort=cohort,
        rows=parsed.rows,
        matched=len(found),
        skipped=parsed.rows - len(found),
        errors=errors[:MAX_LISTED_ERRORS],
    )


async def list_cohorts(session: AsyncSession, workspace_id: uuid.UUID) -> list[Cohort]:
    return await repository.list_cohorts(session, workspace_id)


async def get_cohort(session: AsyncSession, workspace_id: uuid.UUID, cohort_id: uuid.UUID) -> Cohort:
    cohort = await repository.get_cohort(session, workspace_id, cohort_id)
    if cohort is None:
        raise NotFound(f"No cohort {cohort_id} in this workspace")
    return cohort


async def delete_cohort(session: AsyncSession, workspace_id: uuid.UUID, cohort_id: uuid.UUID) -> None:
    await get_cohort(session, workspace_id, cohort_id)
    users = await repository.segment_names_using_cohort(session, workspace_id, cohort_id)
    if users:
        raise Conflict(f"Segments use this cohort: {', '.join(users)}; change them first")
    await repository.delete_cohort(session, workspace_id, cohort_id)
