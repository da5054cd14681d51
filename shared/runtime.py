"""Process-wide settings every Dasi process (service app or worker) applies once at startup."""

from __future__ import annotations

import gc

YOUNG_COLLECTION_EVERY = 50_000  # allocations (CPython's default is 700)
_gc_tuned = False


def tune_gc() -> None:
    """The services allocate dozens of short-lived objects per event or message and keep almost
    none. With CPython's default thresholds the cyclic GC took ~15-20% of the dispatcher worker's
    CPU and ~12% of ingest's request path, mostly in collections that walked every long-lived object
    (modules, ORM mappings, pydantic schemas). What exists at startup is frozen out of the
    collections, and young objects are collected every YOUNG_COLLECTION_EVERY allocations.
    Once per process (tests start many apps in one)."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 10)
