"""CSV member import: UTF-8 and CP949 exports become profiles with traits and consents through the
tracking write path; bad rows are reported while good rows are kept; the same file twice records
nothing twice; the limits answer problem+json; one store's import never touches another's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.ingest import imports
from services.ingest.main import create_app
from shared.clock import zone
from shared.testing.fixtures import serve
from tests.ingest.conftest import events_of, profiles_of, published, unpublished, write_key

KST = timezone(timedelta(hours=9))

MEMBERS = (
    "회원ID,이름,휴대폰번호,이메일,성별,생년월일,지역,SMS수신동의,이메일수신동의,카카오수신동의,"
    "앱푸시수신동의,야간수신동의,가입일,등급\r\n"
    "user-1004,김민지,010-1234-5678,minji@example.com,여,1995.03.07,서울,Y,N,동의,예,아니오,"
    "2024-03-01 14:22:10,VIP\r\n"
    'user-1005,"이서준, 주니어",+82 10-2222-3333,,남,19880115,부산,N,Y,거부,1,0,2025.1.5,\r\n'
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def manage(settings, clock, db, redis, shop) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the ingest app that sends `shop`'s secret key."""
    async with serve(create_app(settings, clock=clock), headers=bearer(shop.secret_key)) as http:
        yield http


async def upload(
    client: httpx.AsyncClient, content: bytes, encoding: str | None = None, **kwargs: Any
) -> httpx.Response:
    data = {"encoding": encoding} if encoding else None
    files = {"file": ("members.csv", content, "text/csv")}
    return await client.post("/v1/profiles/import", files=files, data=data, **kwargs)


def by_user(profiles) -> dict[str | None, Any]:
    return {p.user_id: p for p in profiles}


async def test_a_utf8_export_becomes_profiles_with_traits_and_consents(manage, db, redis, shop):
    response = await upload(manage, "\ufeff".encode() + MEMBERS.encode())

    assert response.status_code == 200, response.text
    assert response.json() == {"rows": 2, "imported": 2, "duplicates": 0, "skipped": 0, "errors": []}
    profiles = by_user(await profiles_of(db, shop.workspace.id))
    assert profiles["user-1004"].traits == {
        "name": "김민지",
        "phone": "01012345678",
        "email": "minji@example.com",
        "gender": "female",
        "birthdate": "1995-03-07",
        "region": "서울",
        "signed_up_at": "2024-03-01T14:22:10+09:00",
        "consents": {"sms": True, "email": False, "kakao": True, "push": True, "night": False},
        "consents_at": "2026-11-23T10:00:00+09:00",
        "등급": "VIP",
    }
    minor = profiles["user-1005"].traits
    assert (minor["name"], minor["phone"], minor["birthdate"]) == (
        "이서준, 주니어",
        "01022223333",
        "1988-01-15",
    )
    assert minor["signed_up_at"] == "2025-01-05T00:00:00+09:00"
    assert minor["consents"] == {"sms": False, "email": True, "kakao": False, "push": True, "night": False}
    assert "email" not in minor and "등급" not in minor  # empty cells set nothing

    events = await events_of(db, shop.workspace.id)
    assert [e.type for e in events] == ["identify", "identify"]
    assert all(e.message_id.startswith("import-") for e in events)
    assert {m.event_id for m in await published(db, redis)} == {e.id for e in events}
    assert await unpublished(db) == []


@pytest.mark.parametrize("encoding", [None, "cp949", "euc-kr"])
async def test_a_korean_excel_export_in_cp949_is_read(manage, db, shop, encoding):
    response = await upload(manage, MEMBERS.encode("cp949"), encoding)

    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 2
    profiles = by_user(await profiles_of(db, shop.workspace.id))
    assert profiles["user-1004"].traits["name"] == "김민지"
    assert profiles["user-1004"].traits["region"] == "서울"
    assert "등급" in profiles["user-1004"].traits


async def test_bad_rows_are_reported_and_the_good_rows_kept(manage, db, shop):
    csv = (
        "아이디,이름,휴대폰,이메일,생년월일,SMS수신동의\n"
        "u1,김민지,010-1234-5678,minji@example.com,1995-03-07,Y\n"  # row 2: good
        ",이름없음,010-1111-2222,,,\n"  # row 3: no user_id
        "u3,박지훈,12-34,not-an-email,1995-13-40,Y\n"  # row 4: three bad values
        "u4,최유나,010-3333-4444\n"  # row 5: too few columns
        "\n"  # blank: not a row
        "u5,정하늘,,,,모름\n"  # row 7: not a consent
        "u6,한가람,01055556666,gaga@example.com,,N\n"  # row 8: good
    )

    response = await upload(manage, csv.encode())

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rows"], body["imported"], body["skipped"]) == (6, 2, 4)
    assert [(e["row"], e["column"]) for e in body["errors"]] == [
        (3, "아이디"),
        (4, "휴대폰"),
        (4, "이메일"),
        (4, "생년월일"),
        (5, None),
        (7, "SMS수신동의"),
    ]
    assert body["errors"][0]["message"] == "user_id is required"
    assert body["errors"][4]["message"] == "expected 6 columns, found 3"
    profiles = by_user(await profiles_of(db, shop.workspace.id))
    assert set(profiles) == {"u1", "u6"}
    assert profiles["u6"].traits["consents"] == {"sms": False}


async def test_a_record_csv_cannot_read_stops_the_reading_but_keeps_the_rows_before(manage, db, shop):
    csv = "user_id,메모\nu1,좋음\nu2," + "x" * 200_000 + "\nu3,좋음\n"

    body = (await upload(manage, csv.encode())).json()

    assert (body["imported"], body["skipped"]) == (1, 1)
    assert body["errors"][0]["row"] == 3
    assert "reading stopped here" in body["errors"][0]["message"]
    assert [p.user_id for p in await profiles_of(db, shop.workspace.id)] == ["u1"]


async def test_uploading_the_same_file_again_records_nothing_twice(manage, db, redis, shop, clock):
    first = await upload(manage, MEMBERS.encode())
    clock.advance(timedelta(hours=1))
    again = await upload(manage, MEMBERS.encode("cp949"), "cp949")  # other bytes: a new file
    same = await upload(manage, MEMBERS.encode())

    assert first.json()["imported"] == 2
    assert again.json()["imported"] == 2
    assert (same.json()["imported"], same.json()["duplicates"]) == (0, 2)
    assert len(await events_of(db, shop.workspace.id)) == 4
    assert len(await published(db, redis)) == 4
    assert len(await profiles_of(db, shop.workspace.id)) == 2


async def test_large_files_are_recorded_in_chunks(manage, db, shop, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    csv = "user_id,name\n" + "".join(f"u{i},회원{i}\n" for i in range(5)) + "u0,김민지\n"

    response = await upload(manage, csv.encode())

    assert response.json() == {"rows": 6, "imported": 6, "duplicates": 0, "skipped": 0, "errors": []}
    profiles = by_user(await profiles_of(db, shop.workspace.id))
    assert len(profiles) == 5
    assert profiles["u0"].traits == {"name": "김민지"}  # the later row wins


async def test_the_error_list_is_capped_but_every_bad_row_is_counted(manage, monkeypatch):
    monkeypatch.setattr(imports, "MAX_LISTED_ERRORS", 3)
    csv = "user_id,phone\n" + "".join(f"u{i},123\n" for i in range(10))

    body = (await upload(manage, csv.encode())).json()

    assert (body["skipped"], len(body["errors"])) == (10, 3)


@pytest.mark.parametrize(
    ("content", "encoding", "field", "detail"),
    [
        ("이름,휴대폰\n김민지,010-1234-5678\n".encode(), None, "body.file", "no user_id column"),
        (b"user_id,name\nu1,\xff\xfe\xff\n", None, "body.file", "not valid utf-8-sig or cp949"),
        (MEMBERS.encode("cp949"), "utf-8", "body.file", "not valid utf-8-sig"),
        (MEMBERS.encode(), "latin-9", "body.encoding", "encoding must be one of"),
        (b"", None, "body.file", "The file is empty"),
    ],
)
async def test_a_file_that_cannot_be_read_is_a_422(manage, db, shop, content, encoding, field, detail):
    response = await upload(manage, content, encoding)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert detail in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [field]
    assert await profiles_of(db, shop.workspace.id) == []


async def test_a_form_without_a_file_is_a_422(manage):
    response = await manage.post("/v1/profiles/import", files={"other": ("x.csv", b"user_id\nu1\n")})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.file"


async def test_a_body_that_is_not_a_form_is_a_415(manage):
    response = await manage.post(
        "/v1/profiles/import", content=MEMBERS.encode(), headers={"content-type": "text/csv"}
    )

    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("excess", [1, 100 * 1024])  # the file alone; the whole body too
async def test_a_file_over_20_mb_is_a_413(manage, db, shop, excess):
    content = b"user_id,memo\n" + b"u1," + b"x" * imports.MAX_BYTES
    content = content[: imports.MAX_BYTES + excess]

    response = await upload(manage, content)

    assert response.status_code == 413
    assert response.json()["title"] == "Payload too large"
    assert await profiles_of(db, shop.workspace.id) == []


async def test_only_a_secret_key_opens_the_import(manage, shop):
    for headers in ({"Authorization": ""}, write_key(shop.write_key), bearer(shop.write_key)):
        response = await upload(manage, MEMBERS.encode(), headers=headers)
        assert response.status_code == 401


async def test_an_import_stays_in_its_own_workspace(settings, clock, db, redis, make_workspace):
    store_a = await make_workspace("다시 스토어")
    store_b = await make_workspace("김민지 공방")
    async with serve(create_app(settings, clock=clock)) as client:
        imported_a = await upload(client, MEMBERS.encode(), headers=bearer(store_a.secret_key))
        seen_by_b = await client.get(
            "/v1/profiles", params={"user_id": "user-1004"}, headers=bearer(store_b.secret_key)
        )
        imported_b = await upload(client, MEMBERS.encode(), headers=bearer(store_b.secret_key))

    assert imported_a.json()["imported"] == 2
    assert seen_by_b.status_code == 404
    assert (imported_b.json()["imported"], imported_b.json()["duplicates"]) == (2, 0)  # not A's duplicates
    profiles_a = await profiles_of(db, store_a.workspace.id)
    profiles_b = await profiles_of(db, store_b.workspace.id)
    assert len(profiles_a) == len(profiles_b) == 2
    assert not {p.id for p in profiles_a} & {p.id for p in profiles_b}


# -- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("010-1234-5678", "01012345678"),
        ("010 1234 5678", "01012345678"),
        ("(010)1234.5678", "01012345678"),
        ("+82 10-1234-5678", "01012345678"),
        ("1012345678", "01012345678"),  # Excel dropped the leading zero
        ("02-123-4567", "021234567"),
    ],
)
def test_phone_numbers_become_digits(written, stored):
    assert imports.phone(written) == stored


@pytest.mark.parametrize("written", ["12-34", "010-1234-56789-1", "전화없음", "+1 415 555 0100"])
def test_malformed_phone_numbers_are_refused(written):
    with pytest.raises(imports.BadValue):
        imports.phone(written)


@pytest.mark.parametrize(
    ("written", "granted"),
    [
        ("Y", True),
        ("n", False),
        ("예", True),
        ("아니오", False),
        ("동의", True),
        ("거부", False),
        ("TRUE", True),
        ("false", False),
        ("1", True),
        ("0", False),
    ],
)
def test_consent_words(written, granted):
    assert imports.consent(written) is granted


@pytest.mark.parametrize("written", ["1995-03-07", "1995.03.07", "1995. 3. 7.", "19950307", "1995/3/7"])
def test_birthdates(written):
    assert imports.birthdate(written) == date(1995, 3, 7).isoformat()


@pytest.mark.parametrize("written", ["1995-02-30", "07/03/1995", "1995-03-07 10:00", "어제"])
def test_malformed_birthdates_are_refused(written):
    with pytest.raises(imports.BadValue):
        imports.birthdate(written)


def test_sign_up_times_take_the_workspace_timezone_unless_they_carry_one():
    seoul = zone("Asia/Seoul")
    assert imports.signed_up_at("2024.03.01 9:05", seoul) == "2024-03-01T09:05:00+09:00"
    assert imports.signed_up_at("2024-03-01T00:05:00Z", seoul) == "2024-03-01T00:05:00+00:00"
    assert datetime.fromisoformat(imports.signed_up_at("20240301", seoul)) == datetime(2024, 3, 1, tzinfo=KST)


def test_headers_match_ignoring_case_spaces_and_separators():
    columns = imports.columns_of(["User ID", "휴대폰 번호", "sms-consent", "메모", "", "아이디"])

    assert [(c.header, c.field) for c in columns] == [
        ("User ID", "user_id"),
        ("휴대폰 번호", "phone"),
        ("sms-consent", "sms_consent"),
        ("메모", None),
        ("아이디", None),  # a second user_id column is only a custom trait
    ]
