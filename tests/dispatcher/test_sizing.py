"""SMS / LMS / MMS by EUC-KR bytes, characters EUC-KR cannot carry, and the ad form per channel."""

from __future__ import annotations

import pytest

from services.dispatcher.adform import (
    Content,
    Sender,
    final_content,
    kakao_fallback_text,
    text_ad_body,
)
from services.dispatcher.providers.base import Channel
from services.dispatcher.sizing import ContentError, euc_kr_bytes, size_text

STORE = Sender("다시 스토어", "0801234567")


def hangul(n_bytes: int) -> str:
    """Korean text of exactly `n_bytes` EUC-KR bytes (2 per syllable, 1 for a trailing '.')."""
    text = "가나다라마바사아자차카타파하" * 200
    return text[: n_bytes // 2] + ("." if n_bytes % 2 else "")


def test_hangul_is_two_bytes_and_ascii_one():
    assert euc_kr_bytes("안녕하세요") == 10
    assert euc_kr_bytes("SALE 50%") == 8
    assert euc_kr_bytes("줄\n바꿈") == 7


@pytest.mark.parametrize(("n", "channel"), [(90, Channel.sms), (91, Channel.lms), (2000, Channel.lms)])
def test_channel_by_size(n, channel):
    text = hangul(n)
    assert euc_kr_bytes(text) == n
    sized = size_text(text)
    assert sized.channel is channel and sized.body_bytes == n


def test_over_2000_bytes_is_refused():
    with pytest.raises(ContentError) as exc:
        size_text(hangul(2001))
    assert exc.value.code == "body_too_long" and "2001 bytes" in exc.value.message


def test_subject_up_to_40_bytes():
    assert size_text("본문", subject=hangul(40)).channel is Channel.lms
    with pytest.raises(ContentError) as exc:
        size_text("본문", subject=hangul(41))
    assert exc.value.code == "subject_too_long" and exc.value.field == "subject"


def test_an_image_makes_it_mms():
    sized = size_text("이미지와 함께", image_url="https://dasi.shop/a.jpg")
    assert sized.channel is Channel.mms


@pytest.mark.parametrize(
    ("text", "char", "position"),
    [("가나\n다😀라", "😀", 4), ("똠양꿍 세일", "똠", 0), ("세일・특가", "・", 2), ("햏", "햏", 0)],
)
def test_characters_euc_kr_cannot_carry_are_refused_with_their_position(text, char, position):
    with pytest.raises(ContentError) as exc:
        size_text(text)
    assert exc.value.code == "unencodable_character"
    assert exc.value.position == position
    assert f"'{char}'" in exc.value.message and f"character {position}" in exc.value.message


def test_hanja_and_symbols_in_ks_x_1001_are_fine():
    assert euc_kr_bytes("漢字 ™ €") == 10


def test_sms_ad_form():
    final = final_content(Channel.sms, Content("주말 특가 50%"), is_ad=True, sender=STORE)
    assert final.body == "(광고)다시 스토어\n주말 특가 50%\n무료수신거부 080-123-4567"
    assert final.body.startswith("(광고)") and final.is_ad
    assert final.channel is Channel.sms and final.body_bytes == euc_kr_bytes(final.body)


def test_ad_form_moves_an_sms_to_lms():
    body = hangul(80)
    assert final_content(Channel.sms, Content(body), is_ad=False, sender=STORE).channel is Channel.sms
    ad = final_content(Channel.sms, Content(body), is_ad=True, sender=STORE)
    assert ad.channel is Channel.lms
    assert ad.body_bytes == 80 + euc_kr_bytes("(광고)다시 스토어\n") + euc_kr_bytes(
        "\n무료수신거부 080-123-4567"
    )


def test_ad_form_replaces_a_wrong_label_and_opt_out_line():
    body = "[광고] 특가 안내\n무료수신거부 080-999-0000"
    assert text_ad_body(body, STORE) == "(광고)다시 스토어\n특가 안내\n무료수신거부 080-123-4567"
    written_out = "(광고)다시 스토어\n특가 안내\n무료수신거부 080-123-4567"
    assert text_ad_body(written_out, STORE) == written_out


def test_ad_without_080_number_or_store_is_refused():
    with pytest.raises(ContentError) as exc:
        final_content(Channel.sms, Content("특가"), is_ad=True, sender=Sender("다시 스토어"))
    assert exc.value.code == "missing_opt_out_number"
    with pytest.raises(ContentError) as exc:
        final_content(Channel.sms, Content("특가"), is_ad=True, sender=Sender(" ", "0801234567"))
    assert exc.value.code == "missing_store_name"


def test_image_only_ad_mms_is_refused():
    with pytest.raises(ContentError) as exc:
        final_content(Channel.sms, Content(" ", image_url="https://x/a.jpg"), is_ad=True, sender=STORE)
    assert exc.value.code == "image_only_ad"


def test_kakao_ad_forms():
    friendtalk = final_content(Channel.friendtalk, Content("(광고) 주말 특가"), is_ad=True, sender=STORE)
    assert friendtalk.body == "주말 특가" and friendtalk.is_ad  # Kakao prints the label itself
    brand = final_content(Channel.brand_message, Content("주말 특가"), is_ad=True, sender=STORE)
    assert brand.body == "주말 특가\n무료수신거부 080-123-4567"
    with pytest.raises(ContentError) as exc:
        final_content(Channel.alimtalk, Content("주문 안내"), is_ad=True, sender=STORE)
    assert exc.value.code == "alimtalk_ad_content"
    with pytest.raises(ContentError):
        final_content(Channel.alimtalk, Content("(광고) 주문 안내"), is_ad=False, sender=STORE)
    with pytest.raises(ContentError) as exc:
        final_content(
            Channel.friendtalk, Content("가" * 401, image_url="https://x/a.jpg"), is_ad=False, sender=STORE
        )
    assert exc.value.code == "body_too_long"


def test_email_and_push_ad_forms():
    email = final_content(
        Channel.email,
        Content("블랙프라이데이 안내", "최대 70% 할인"),
        is_ad=True,
        sender=STORE,
        unsubscribe_url="https://go.dasi.shop/u/t1",
    )
    assert email.subject == "(광고) 최대 70% 할인"
    assert "다시 스토어" in email.body and "https://go.dasi.shop/u/t1" in email.body
    html = final_content(
        Channel.email,
        Content("<html><body><p>할인</p></body></html>", "할인"),
        is_ad=True,
        sender=STORE,
        unsubscribe_url="https://go.dasi.shop/u/t1",
    )
    assert html.body.endswith("</p></body></html>") and 'href="https://go.dasi.shop/u/t1"' in html.body
    with pytest.raises(ContentError) as exc:
        final_content(Channel.email, Content("본문", "제목"), is_ad=True, sender=STORE)
    assert exc.value.code == "missing_unsubscribe_url"
    push = final_content(Channel.push, Content("오늘만 특가", "주말 세일"), is_ad=True, sender=STORE)
    assert push.subject == "(광고) 주말 세일" and "수신거부" in push.body
    plain = final_content(Channel.push, Content("배송이 시작됐어요", "배송 안내"), is_ad=False, sender=STORE)
    assert plain.subject == "배송 안내" and plain.body == "배송이 시작됐어요"


def test_kakao_fallback_sms_is_in_ad_form_when_the_kakao_message_is_an_ad():
    fallback = kakao_fallback_text("주말 특가 안내", is_ad=True, sender=STORE)
    assert fallback.body.startswith("(광고)다시 스토어") and fallback.body.endswith(
        "무료수신거부 080-123-4567"
    )
    assert fallback.channel is Channel.sms
    informational = kakao_fallback_text("주문하신 상품이 발송되었습니다", is_ad=False, sender=STORE)
    assert informational.body == "주문하신 상품이 발송되었습니다"
