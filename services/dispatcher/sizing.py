"""Text messages by size: SMS, LMS or MMS, chosen by the EUC-KR byte count carriers bill by.

- SMS: body <= 90 bytes, no subject, no image.
- LMS: body <= 2,000 bytes, subject <= 40 bytes. A subject asks for LMS even when the body would fit
  an SMS (SMS has no title on the handset; dropping the subject silently would change the message).
- MMS: an image is attached (body <= 2,000 bytes, subject <= 40 bytes).

A character EUC-KR (KS X 1001) cannot carry is refused with its position, never sent as "?" or
garbled: emoji, "・" (U+30FB), and the Hangul syllables outside the 2,350 of KS X 1001 ("똠", "햏",
"뷁"), which Python's codec would spell as an 8-byte make-up sequence handsets show as jamo soup.

The count includes everything that goes out: the ad label, store name and opt-out line (adform.py)
are added before sizing, so an ad can move from SMS to LMS because of them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from services.dispatcher.providers.base import Channel

CODEC = "euc_kr"
SMS_MAX_BYTES = 90
LMS_MAX_BYTES = 2_000
SUBJECT_MAX_BYTES = 40


class ContentError(ValueError):
    """Content that cannot go out as it is. `code` is a stable machine reason, `field` names the part
    ("body", "subject"), `position` the 0-based character index when one character is to blame."""

    def __init__(self, code: str, message: str, *, field: str = "body", position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.position = position


def _char_name(char: str) -> str:
    return unicodedata.name(char, f"U+{ord(char):04X}")


# Python's codec spells a syllable outside KS X 1001 as a make-up sequence that starts with the
# Hangul filler; where these bytes appear (or encoding fails) the slow path finds the culprit.
_MAKE_UP_SEQUENCE = "\u3164".encode(CODEC)


def euc_kr_bytes(text: str, *, field: str = "body") -> int:
    """The byte count of `text` in EUC-KR; ContentError (code `unencodable_character`) naming the
    first character EUC-KR cannot carry and its position (0-based character index, and line:column)."""
    try:
        encoded = text.encode(CODEC)
    except UnicodeEncodeError:
        encoded = _MAKE_UP_SEQUENCE
    if _MAKE_UP_SEQUENCE not in encoded:
        return len(encoded)  # the whole string at C speed: the common case
    return _euc_kr_bytes_by_character(text, field)


def _euc_kr_bytes_by_character(text: str, field: str) -> int:
    total = 0
    for index, char in enumerate(text):
        try:
            encoded = char.encode(CODEC)
        except UnicodeEncodeError:
            encoded = b""
        if not encoded or len(encoded) > 2:
            line = text.count("\n", 0, index) + 1
            column = index - (text.rfind("\n", 0, index) + 1) + 1
            raise ContentError(
                "unencodable_character",
                f"'{char}' ({_char_name(char)}, U+{ord(char):04X}) at character {index} "
                f"(line {line}, column {column}) cannot be sent in EUC-KR; remove or replace it",
                field=field,
                position=index,
            )
        total += len(encoded)
    return total


@dataclass(frozen=True)
class SizedText:
    """A text message with its channel decided: what an SMS/LMS/MMS adapter gets."""

    channel: Channel  # sms, lms or mms
    body: str
    body_bytes: int
    subject: str | None = None
    subject_bytes: int = 0
    image_url: str | None = None


def size_text(body: str, *, subject: str | None = None, image_url: str | None = None) -> SizedText:
    """Choose SMS / LMS / MMS for the final text (ad form already applied), or raise ContentError:
    `unencodable_character`, `body_too_long` (> 2,000 bytes), `subject_too_long` (> 40 bytes),
    `empty_body`."""
    if not body.strip():
        raise ContentError("empty_body", "the message text is empty")
    body_bytes = euc_kr_bytes(body, field="body")
    subject = subject or None
    subject_bytes = euc_kr_bytes(subject, field="subject") if subject else 0
    if subject_bytes > SUBJECT_MAX_BYTES:
        raise ContentError(
            "subject_too_long",
            f"the subject is {subject_bytes} bytes in EUC-KR; LMS/MMS allow at most {SUBJECT_MAX_BYTES}",
            field="subject",
        )
    if body_bytes > LMS_MAX_BYTES:
        raise ContentError(
            "body_too_long",
            f"the text is {body_bytes} bytes in EUC-KR (ad label and opt-out line included); "
            f"LMS/MMS allow at most {LMS_MAX_BYTES}",
        )
    if image_url:
        channel = Channel.mms
    elif subject is None and body_bytes <= SMS_MAX_BYTES:
        channel = Channel.sms
    else:
        channel = Channel.lms
    return SizedText(channel, body, body_bytes, subject, subject_bytes, image_url)
