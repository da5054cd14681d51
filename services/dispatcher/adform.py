"""The final form of a message on its channel: the advertising form (DOMAIN C4-C6, C11, C13) and the
channel's size rules. Everything here is pure: rendered text in, final text (or a ContentError) out.

Ad form per channel:
- SMS / LMS / MMS: the body starts with exactly "(광고)" and the store name, and ends with
  "무료수신거부 080-XXXX-XXXX". Sized after that (sizing.py), so the label can turn an SMS into an LMS.
  An ad MMS must carry text (C13: no image-only ad); the opt-out line is always in the text.
- Kakao friendtalk / brand message: sent with `is_ad` set. Kakao itself prints the "(광고)" label and
  the channel name above the message and a block-the-channel link below it, so the text gets neither
  (a second label would show twice). A brand message may reach non-friends (M/N targeting), who have
  no channel to block: its ad text ends with the 080 opt-out line.
- Alimtalk: informational only (C9); an ad, or text carrying an ad label, is refused.
- Push: the title starts with "(광고)" (the store name stands in for a missing title); the body ends
  with how to opt out in the app.
- Email: the subject starts with "(광고)"; the body ends with the store name and the unsubscribe link
  (HTML or plain text, whichever the body is).
- Fallback SMS of a Kakao message: the SMS/LMS ad form when the Kakao message is an ad (C11).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

from services.dispatcher.providers.base import Channel
from services.dispatcher.sizing import ContentError, SizedText, size_text

AD_LABEL = "(광고)"
OPT_OUT_PREFIX = "무료수신거부"
PUSH_OPT_OUT = "수신거부: 앱 설정 > 알림 설정"
KAKAO_MAX_CHARS = 1_000
KAKAO_MAX_CHARS_WITH_IMAGE = 400
TEXT_CHANNELS = frozenset({Channel.sms, Channel.lms, Channel.mms})
KAKAO_CHANNELS = frozenset({Channel.alimtalk, Channel.friendtalk, Channel.brand_message})

# labels that look like the ad label but are not the one the law asks for (C4): "(광 고)", "[광고]"
_LABEL_LOOKALIKE = re.compile(r"^\s*[\(\[【<]\s*광\s*고\s*[\)\]】>]\s*")
_OPT_OUT_LINE = re.compile(r"\n?\s*(무료\s*)?수신\s*거부\s*:?\s*080[-\s\d]*\s*$")


@dataclass(frozen=True)
class Sender:
    """What the ad form needs from the workspace's sender profile."""

    store_name: str
    opt_out_number: str | None = None  # the registered 080 number, digits


@dataclass(frozen=True)
class Content:
    """A rendered message before its channel form."""

    body: str
    subject: str | None = None  # LMS/MMS subject, email subject, push title
    image_url: str | None = None


@dataclass(frozen=True)
class FinalContent:
    """What goes out: the channel is final (SMS may have become LMS or MMS)."""

    channel: Channel
    body: str
    subject: str | None
    image_url: str | None
    is_ad: bool
    body_bytes: int | None = None  # EUC-KR bytes, text channels only
    subject_bytes: int | None = None
    unsubscribe_url: str | None = None


def format_phone(digits: str) -> str:
    """ "0801234567" -> "080-123-4567", "08012345678" -> "080-1234-5678", "15881234" -> "1588-1234"."""
    d = re.sub(r"\D", "", digits)
    if len(d) == 8:
        return f"{d[:4]}-{d[4:]}"
    if d.startswith("02") and len(d) in (9, 10):
        return f"02-{d[2:-4]}-{d[-4:]}"
    if len(d) in (10, 11):
        return f"{d[:3]}-{d[3:-4]}-{d[-4:]}"
    return digits


def opt_out_line(opt_out_number: str) -> str:
    return f"{OPT_OUT_PREFIX} {format_phone(opt_out_number)}"


def _strip_ad_marks(body: str) -> str:
    """A template may carry its own label or opt-out line; the standard ones replace them."""
    body = _LABEL_LOOKALIKE.sub("", body, count=1)
    return _OPT_OUT_LINE.sub("", body).strip("\n")


def _require_store(sender: Sender) -> None:
    if not sender.store_name.strip():
        raise ContentError("missing_store_name", "an ad must name the store (sender profile `store_name`)")


def _require_opt_out(sender: Sender) -> str:
    if not sender.opt_out_number:
        raise ContentError(
            "missing_opt_out_number",
            "an ad must carry a free opt-out number (080); set `opt_out_number` in the sender profile",
        )
    return sender.opt_out_number


def text_ad_body(body: str, sender: Sender) -> str:
    """SMS/LMS/MMS ad text: "(광고)<store>\\n<body>\\n무료수신거부 080-..."."""
    _require_store(sender)
    number = _require_opt_out(sender)
    store = sender.store_name.strip()
    text = _strip_ad_marks(body)
    if _LABEL_LOOKALIKE.match(body) and text.startswith(store):
        text = text[len(store) :].lstrip(" \n")  # the template wrote the heading itself
    return f"{AD_LABEL}{store}\n{text}\n{opt_out_line(number)}"


def text_message(content: Content, *, is_ad: bool, sender: Sender) -> SizedText:
    """An SMS/LMS/MMS in its final form, sized."""
    if is_ad and content.image_url and not _strip_ad_marks(content.body).strip():
        raise ContentError("image_only_ad", "an ad MMS needs text: an image-only ad hides the opt-out (C13)")
    body = text_ad_body(content.body, sender) if is_ad else content.body
    return size_text(body, subject=content.subject, image_url=content.image_url)


def _kakao(channel: Channel, content: Content, *, is_ad: bool, sender: Sender) -> FinalContent:
    body = content.body
    if channel is Channel.alimtalk:
        if is_ad or _LABEL_LOOKALIKE.match(body):
            raise ContentError(
                "alimtalk_ad_content", "alimtalk is informational only; send advertising by friendtalk (C9)"
            )
    elif is_ad:
        _require_store(sender)
        body = _strip_ad_marks(body)
        if channel is Channel.brand_message:
            body = f"{body}\n{opt_out_line(_require_opt_out(sender))}"
    limit = KAKAO_MAX_CHARS_WITH_IMAGE if content.image_url else KAKAO_MAX_CHARS
    if len(body) > limit:
        raise ContentError(
            "body_too_long", f"a Kakao message holds at most {limit} characters; this one has {len(body)}"
        )
    if not body.strip():
        raise ContentError("empty_body", "the message text is empty")
    return FinalContent(channel, body, None, content.image_url, is_ad)


def _push(content: Content, *, is_ad: bool, sender: Sender) -> FinalContent:
    title, body = content.subject, content.body
    if is_ad:
        _require_store(sender)
        title = f"{AD_LABEL} {_strip_ad_marks(title or '') or sender.store_name.strip()}"
        body = f"{_strip_ad_marks(body)}\n{PUSH_OPT_OUT}"
    return FinalContent(Channel.push, body, title, content.image_url, is_ad)


def _looks_html(body: str) -> bool:
    return bool(re.search(r"<(html|body|p|div|table|br|a)\b", body, re.IGNORECASE))


def _email(content: Content, *, is_ad: bool, sender: Sender, unsubscribe_url: str | None) -> FinalContent:
    if not content.subject:
        raise ContentError("missing_subject", "an email needs a subject", field="subject")
    subject, body = content.subject, content.body
    if is_ad:
        _require_store(sender)
        if not unsubscribe_url:
            raise ContentError("missing_unsubscribe_url", "an ad email needs an unsubscribe link")
        subject = f"{AD_LABEL} {_LABEL_LOOKALIKE.sub('', subject, count=1)}"
        store = sender.store_name.strip()
        if _looks_html(body):
            footer = (
                f'<p style="font-size:12px;color:#888">{escape(store)} | 더 이상 받지 않으시려면 '
                f'<a href="{escape(unsubscribe_url)}">수신거부</a>를 눌러 주세요.</p>'
            )
            closing = re.search(r"</body>", body, re.IGNORECASE)
            body = body[: closing.start()] + footer + body[closing.start() :] if closing else body + footer
        else:
            body = f"{body}\n\n{store}\n더 이상 받지 않으시려면 수신거부: {unsubscribe_url}"
    return FinalContent(
        Channel.email, body, subject, content.image_url, is_ad, unsubscribe_url=unsubscribe_url
    )


def final_content(
    channel: Channel,
    content: Content,
    *,
    is_ad: bool,
    sender: Sender,
    unsubscribe_url: str | None = None,
) -> FinalContent:
    """The message as it goes out on `channel` (for SMS/LMS/MMS: the channel sizing chose), or
    ContentError with a stable `code`."""
    if channel in TEXT_CHANNELS:
        sized = text_message(content, is_ad=is_ad, sender=sender)
        return FinalContent(
            sized.channel,
            sized.body,
            sized.subject,
            sized.image_url,
            is_ad,
            body_bytes=sized.body_bytes,
            subject_bytes=sized.subject_bytes if sized.subject else None,
        )
    if channel in KAKAO_CHANNELS:
        return _kakao(channel, content, is_ad=is_ad, sender=sender)
    if channel is Channel.push:
        return _push(content, is_ad=is_ad, sender=sender)
    return _email(content, is_ad=is_ad, sender=sender, unsubscribe_url=unsubscribe_url)


def kakao_fallback_text(body: str, *, is_ad: bool, sender: Sender, subject: str | None = None) -> SizedText:
    """The SMS/LMS that stands in for a Kakao message that cannot be delivered (대체문자): in ad form
    when the Kakao message is an ad (C11). Use it for `ProviderFallback.content` / `title`."""
    return text_message(Content(body, subject), is_ad=is_ad, sender=sender)
