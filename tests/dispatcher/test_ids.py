"""Message and attempt ids are built from the 128-bit int (a third of uuid.uuid5's cost): the same
ids as the standard library's, so a message keeps its id across versions."""

from __future__ import annotations

import os
import uuid

from services.dispatcher.pipeline import _random_ids
from services.dispatcher.repository import _ID_NAMESPACE, message_id_for


def test_message_ids_are_the_standard_uuid5():
    workspace = uuid.UUID("0b4c6d38-5c8e-4f7a-9f53-1f0e8d2a7c11")
    for key in ("k1", "cart-2026-11-23-김민지", os.urandom(8).hex()):
        assert message_id_for(workspace, key) == uuid.uuid5(_ID_NAMESPACE, f"{workspace}:{key}")


def test_attempt_ids_are_random_version_4_uuids():
    ids = list(_random_ids(500))
    assert len(set(ids)) == 500
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
