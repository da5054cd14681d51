"""Identity resolution: which profile each message belongs to. Pure logic, no I/O.

The rules, applied message by message in the order received:

- A known `userId` decides the profile. A `userId` never seen before joins the profile of the
  message's `anonymousId` (the shopper signed up or logged in), unless that profile already belongs
  to another userId (a shared device): then the new userId gets a profile of its own.
- An `anonymousId` that has its own anonymous profile and shows up beside a known `userId` is
  merged into that user's profile: its identities, events and traits move over.
- `alias` says `previousId` (an anonymousId or a former userId) and `userId` are one shopper:
  their profiles are merged into the userId's.
- Otherwise a new profile is made and the message's ids point at it.

The repository applies the resulting `Plan` with a handful of set-based statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uuid_utils
from asyncpg.pgproto.pgproto import UUID as DriverUUID

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"

Key = tuple[str, str]  # (kind, value)


@dataclass  # one per message: a frozen dataclass sets each field through object.__setattr__ (~1.3 us)
class Ids:
    """The ids one message carries."""

    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None = None  # alias only
    traits: dict[str, Any] | None = None  # identify only: merged into the profile


@dataclass
class Plan:
    profile_of_message: list[uuid.UUID] = field(default_factory=list)
    new_profiles: dict[uuid.UUID, str | None] = field(default_factory=dict)  # id -> user_id
    new_identities: dict[Key, uuid.UUID] = field(default_factory=dict)
    user_ids: dict[uuid.UUID, str] = field(default_factory=dict)  # existing profiles that got one
    merges: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (source, final target)
    traits: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)


def new_profile_id() -> uuid.UUID:
    """A time-ordered id (version 7), as event ids are, as asyncpg's UUID: a `uuid.UUID` whose hash is
    C code (~50 ns, the stdlib's ~100 ns in Python), as the ids the database returns are. A batch hashes
    profile ids ~9 times an event (cProfile of `infra.bench.ingest_steps`). Made from uuid_utils'
    bytes: ~0.25 us, its `compat.uuid7` ~1.4."""
    return DriverUUID(uuid_utils.uuid7().bytes)


class Resolver:
    def __init__(
        self,
        known: dict[Key, uuid.UUID],
        users: dict[uuid.UUID, str | None],
        new_id: Callable[[], uuid.UUID] = new_profile_id,
    ) -> None:
        self._profile_of = dict(known)
        self._user_of = dict(users)
        self._new_id = new_id
        self._merged_into: dict[uuid.UUID, uuid.UUID] = {}
        self._new_profiles: set[uuid.UUID] = set()
        self._new_keys: set[Key] = set()
        self._user_ids_set: set[uuid.UUID] = set()

    def resolve(self, messages: Iterable[Ids]) -> Plan:
        chosen: list[uuid.UUID] = []
        traits: list[tuple[uuid.UUID, dict[str, Any]]] = []
        for ids in messages:
            profile = self._alias(ids) if ids.previous_id else self._one(ids)
            chosen.append(profile)
            if ids.traits:
                traits.append((profile, ids.traits))
        return self._plan(chosen, traits)

    # -- one message -------------------------------------------------------------------------

    def _one(self, ids: Ids) -> uuid.UUID:
        by_user = self._known(USER_ID, ids.user_id)
        by_anon = self._known(ANONYMOUS_ID, ids.anonymous_id)
        if by_user is not None:
            if by_anon is not None and by_anon != by_user and self._user_of.get(by_anon) is None:
                self._merge(by_anon, by_user)
            profile = by_user
        elif by_anon is not None and (not ids.user_id or self._user_of.get(by_anon) is None):
            profile = by_anon
        else:
            profile = self._create()
        if ids.user_id:
            self._claim_user(profile, ids.user_id)
        if ids.anonymous_id and by_anon is None:
            self._link((ANONYMOUS_ID, ids.anonymous_id), profile)
        return profile

    def _alias(self, ids: Ids) -> uuid.UUID:
        assert ids.user_id and ids.previous_id
        target = self._known(USER_ID, ids.user_id)
        source = self._known(USER_ID, ids.previous_id) or self._known(ANONYMOUS_ID, ids.previous_id)
        if target is None:
            target = source or self._create()
        elif source is not None and source != target:
            self._merge(source, target)
        self._claim_user(target, ids.user_id)
        if source is None:
            self._link((ANONYMOUS_ID, ids.previous_id), target)
        return target

    # -- bookkeeping -------------------------------------------------------------------------

    def _final(self, profile: uuid.UUID) -> uuid.UUID:
        while profile in self._merged_into:
            profile = self._merged_into[profile]
        return profile

    def _known(self, kind: str, value: str | None) -> uuid.UUID | None:
        if not value:
            return None
        profile = self._profile_of.get((kind, value))
        return None if profile is None else self._final(profile)

    def _create(self) -> uuid.UUID:
        profile = self._new_id()
        self._new_profiles.add(profile)
        self._user_of[profile] = None
        return profile

    def _link(self, key: Key, profile: uuid.UUID) -> None:
        self._profile_of[key] = profile
        self._new_keys.add(key)

    def _claim_user(self, profile: uuid.UUID, user_id: str) -> None:
        if (USER_ID, user_id) not in self._profile_of:
            self._link((USER_ID, user_id), profile)
        if self._user_of.get(profile) is None:
            self._user_of[profile] = user_id
            self._user_ids_set.add(profile)

    def _merge(self, source: uuid.UUID, target: uuid.UUID) -> None:
        self._merged_into[source] = target
        for key, profile in self._profile_of.items():
            if profile == source:
                self._profile_of[key] = target

    # -- result ------------------------------------------------------------------------------

    def _plan(self, chosen: list[uuid.UUID], traits: list[tuple[uuid.UUID, dict[str, Any]]]) -> Plan:
        plan = Plan(profile_of_message=[self._final(p) for p in chosen])
        plan.new_profiles = {p: self._user_of.get(p) for p in self._new_profiles}
        plan.new_identities = {key: self._final(self._profile_of[key]) for key in self._new_keys}
        plan.user_ids = {
            p: user
            for p in self._user_ids_set - self._new_profiles
            if (user := self._user_of.get(p)) is not None and p not in self._merged_into
        }
        plan.merges = [(source, self._final(source)) for source in self._merged_into]
        for profile, new_traits in traits:
            plan.traits.setdefault(self._final(profile), {}).update(new_traits)
        return plan
