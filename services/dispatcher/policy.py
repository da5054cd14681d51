"""Whether one message may go to one recipient on one channel now: send, defer, or skip with a reason.

`decide` is pure: the recipient's facts (recipients.py), the message's facts, the workspace's rules
and an instant in; a `Decision` out. Every time rule is in the workspace's timezone. Checks, in order:

1. no_address          nothing to send to on this channel (no phone / push token / email)
2. suppressed          the address (or the whole profile) is on the suppression list
3. unapproved_template alimtalk whose template Kakao has not approved
   alimtalk_ad_content advertising routed through alimtalk (C9)
4. unregistered_sender SMS from a number not registered and verified (C12); Kakao without a sender key;
                       email from an unverified sender
   no_opt_out_number   an ad SMS / brand message without a registered 080 number (C6)
5. not_channel_friend  friendtalk to someone who is not a friend of the store's channel (C10)
6. no_marketing_consent / consent_expired   ads need consent for the channel (C1), re-confirmed
                       within 2 years (C8); an explicit "no" always wins
7. night (C2)          an ad between 21:00 and 08:00 without night consent: deferred to 08:00, or
                       skipped (night_without_consent) when the campaign says so
8. kakao_hours (C3)    friendtalk / brand message outside 08:00 to the cut-off (20:50, or the store's
                       own earlier one): deferred to 08:00, or skipped per the same campaign policy

The C1 exception (same kind of goods within 6 months of a purchase) is not applied: consent is needed.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from services.dispatcher.providers.base import Channel
from shared.clock import DEFAULT_TIMEZONE, is_within_local_window, zone

NIGHT_START = time(21, 0)
NIGHT_END = time(8, 0)
KAKAO_OPEN = time(8, 0)
KAKAO_CUTOFF = time(20, 50)  # Kakao's own limit (result code 3022 after it)
CONSENT_VALID_FOR = timedelta(days=730)  # C8: re-confirmed every 2 years

KAKAO_CHANNELS = frozenset({Channel.alimtalk, Channel.friendtalk, Channel.brand_message})
KAKAO_MARKETING = frozenset({Channel.friendtalk, Channel.brand_message})
TEXT_CHANNELS = frozenset({Channel.sms, Channel.lms, Channel.mms})


def channel_family(channel: Channel) -> str:
    """The consent topic and suppression family of a channel: sms, kakao, push or email."""
    if channel in TEXT_CHANNELS:
        return "sms"
    if channel in KAKAO_CHANNELS:
        return "kakao"
    return channel.value


class Action(enum.StrEnum):
    send = "send"
    defer = "defer"
    skip = "skip"


class Reason(enum.StrEnum):
    no_address = "no_address"
    suppressed = "suppressed"
    unapproved_template = "unapproved_template"
    alimtalk_ad_content = "alimtalk_ad_content"
    unregistered_sender = "unregistered_sender"
    no_opt_out_number = "no_opt_out_number"
    not_channel_friend = "not_channel_friend"
    no_marketing_consent = "no_marketing_consent"
    consent_expired = "consent_expired"
    night_without_consent = "night_without_consent"
    kakao_hours = "kakao_hours"


class NightPolicy(enum.StrEnum):
    defer = "defer"  # hold until the next allowed minute (08:00)
    skip = "skip"  # drop it, with the reason recorded


@dataclass(frozen=True)
class ConsentFact:
    granted: bool
    given_at: datetime


@dataclass(frozen=True)
class Recipient:
    """What the policy and the adapters need to know of one profile (loaded by recipients.py)."""

    profile_id: uuid.UUID | str  # str for a direct address that is no profile (a test send)
    name: str | None = None
    phone: str | None = None  # digits
    email: str | None = None  # lower case
    push_tokens: tuple[str, ...] = ()
    kakao_channel_friend: bool = False
    consents: Mapping[str, ConsentFact] = field(default_factory=dict)  # topic -> latest word
    suppressed: frozenset[tuple[str, str]] = frozenset()  # (channel family or "all", address)
    # opt-outs from advertising (080, one-click unsubscribe): informational messages still go
    ads_suppressed: frozenset[tuple[str, str]] = frozenset()

    def address(self, channel: Channel) -> str | None:
        if channel in TEXT_CHANNELS or channel in KAKAO_CHANNELS:
            return self.phone
        if channel is Channel.email:
            return self.email
        return self.push_tokens[0] if self.push_tokens else None

    def addresses(self) -> list[str]:
        """Every address of the profile (and `profile:<id>`): what a suppression lookup asks about."""
        found = [a for a in (self.phone, self.email, *self.push_tokens) if a]
        return [*found, f"profile:{self.profile_id}"]

    def is_suppressed(self, channel: Channel, address: str | None = None, *, is_ad: bool = True) -> bool:
        if not self.suppressed and not (is_ad and self.ads_suppressed):
            return False  # most recipients: nothing to look through
        family = channel_family(channel)
        wanted = [address or self.address(channel), f"profile:{self.profile_id}"]
        lists = (self.suppressed, self.ads_suppressed) if is_ad else (self.suppressed,)
        return any((scope, a) in found for found in lists for scope in (family, "all") for a in wanted if a)


@dataclass(frozen=True)
class Message:
    """The facts of the message being decided."""

    channel: Channel
    is_ad: bool
    template_review_state: str | None = None  # alimtalk: registered / under_review / approved / rejected
    sender_number: str | None = None  # SMS/LMS/MMS (and a Kakao message's fallback)


@dataclass(frozen=True)
class SenderRules:
    """The sender profile's part in the decision."""

    registered_numbers: frozenset[str] = frozenset()  # verified sender numbers, digits
    opt_out_number: str | None = None
    kakao_sender_key: str | None = None
    email_from_verified: bool = False
    kakao_ad_cutoff: time = KAKAO_CUTOFF


@dataclass(frozen=True)
class Rules:
    """The workspace's and the campaign's part in the decision."""

    timezone: str = DEFAULT_TIMEZONE
    night_policy: NightPolicy = NightPolicy.defer
    night_start: time = NIGHT_START
    night_end: time = NIGHT_END


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason | None = None
    until: datetime | None = None  # for defer: the first instant it may go (UTC)

    @property
    def sends(self) -> bool:
        return self.action is Action.send


SEND = Decision(Action.send)


def _skip(reason: Reason) -> Decision:
    return Decision(Action.skip, reason)


def next_local_time(at: datetime, tz: str, wanted: time) -> datetime:
    """The first instant at or after `at` whose local wall-clock time is `wanted` (UTC)."""
    local = at.astimezone(zone(tz))
    candidate = datetime.combine(local.date(), wanted, tzinfo=zone(tz))
    if candidate < local:
        candidate = datetime.combine(local.date() + timedelta(days=1), wanted, tzinfo=zone(tz))
    return candidate.astimezone(UTC)


def _consent(recipient: Recipient, topic: str, at: datetime) -> Reason | None:
    """None when consent for `topic` holds at `at`; otherwise why not."""
    fact = recipient.consents.get(topic)
    if fact is None or not fact.granted:
        return Reason.no_marketing_consent
    if at - fact.given_at > CONSENT_VALID_FOR:
        return Reason.consent_expired
    return None


def _sender_problem(message: Message, sender: SenderRules) -> Reason | None:
    channel = message.channel
    if channel in TEXT_CHANNELS:
        if not message.sender_number or message.sender_number not in sender.registered_numbers:
            return Reason.unregistered_sender
        if message.is_ad and not sender.opt_out_number:
            return Reason.no_opt_out_number
    elif channel in KAKAO_CHANNELS:
        if not sender.kakao_sender_key:
            return Reason.unregistered_sender
        if channel is Channel.brand_message and message.is_ad and not sender.opt_out_number:
            return Reason.no_opt_out_number
        # a fallback SMS goes from a registered number too
        if message.sender_number and message.sender_number not in sender.registered_numbers:
            return Reason.unregistered_sender
    elif channel is Channel.email and not sender.email_from_verified:
        return Reason.unregistered_sender
    return None


def _marketing_consent(recipient: Recipient, message: Message, at: datetime) -> Reason | None:
    channel = message.channel
    if channel is Channel.friendtalk:
        # adding the store's channel as a friend is the opt-in Kakao counts for friendtalk,
        # unless the person said "no" to Kakao marketing in so many words
        said_no = recipient.consents.get("kakao")
        return Reason.no_marketing_consent if said_no is not None and not said_no.granted else None
    if channel is Channel.brand_message and recipient.kakao_channel_friend:
        said_no = recipient.consents.get("kakao")
        return Reason.no_marketing_consent if said_no is not None and not said_no.granted else None
    return _consent(recipient, channel_family(channel), at)


def _defer_or_skip(rules: Rules, at: datetime, reason: Reason, resume: time) -> Decision:
    if rules.night_policy is NightPolicy.skip:
        return _skip(reason)
    return Decision(Action.defer, reason, next_local_time(at, rules.timezone, resume))


def decide(
    recipient: Recipient,
    message: Message,
    at: datetime,
    *,
    sender: SenderRules,
    rules: Rules | None = None,
) -> Decision:
    """Send, defer until an instant, or skip with a reason: see the module docstring for the order."""
    rules = rules or Rules()
    channel = message.channel
    address = recipient.address(channel)
    if not address:
        return _skip(Reason.no_address)
    if recipient.is_suppressed(channel, address, is_ad=message.is_ad):
        return _skip(Reason.suppressed)
    if channel is Channel.alimtalk:
        if message.is_ad:
            return _skip(Reason.alimtalk_ad_content)
        if message.template_review_state != "approved":
            return _skip(Reason.unapproved_template)
    sender_problem = _sender_problem(message, sender)
    if sender_problem is not None:
        return _skip(sender_problem)
    if channel is Channel.friendtalk and not recipient.kakao_channel_friend:
        return _skip(Reason.not_channel_friend)
    if message.is_ad:
        consent_problem = _marketing_consent(recipient, message, at)
        if consent_problem is not None:
            return _skip(consent_problem)
        at_night = is_within_local_window(at, rules.timezone, rules.night_start, rules.night_end)
        if at_night and _consent(recipient, "night", at) is not None:
            return _defer_or_skip(rules, at, Reason.night_without_consent, rules.night_end)
    if channel in KAKAO_MARKETING and not is_within_local_window(
        at, rules.timezone, KAKAO_OPEN, min(sender.kakao_ad_cutoff, KAKAO_CUTOFF)
    ):
        return _defer_or_skip(rules, at, Reason.kakao_hours, KAKAO_OPEN)
    return SEND


def decide_many(
    recipients: Iterable[Recipient],
    message: Message,
    at: datetime,
    *,
    sender: SenderRules,
    rules: Rules | None = None,
) -> list[tuple[Recipient, Decision]]:
    return [(r, decide(r, message, at, sender=sender, rules=rules)) for r in recipients]
