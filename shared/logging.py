"""structlog set-up: one line per event, key=value on a console or JSON in production.

`service` is bound once per process; `request_id`, `job_id` and `workspace_id` are bound per request
or job through contextvars (structlog.contextvars). Phone numbers and e-mail addresses in any value
are masked before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from shared.settings import Settings

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Korean mobile / landline numbers and E.164 forms: keep the first 3 and last 2 digits
_PHONE = re.compile(r"(?<!\d)(\+?\d{2,3})[- .]?(\d{3,4})[- .]?(\d{2})(\d{2})(?!\d)")


def mask_pii(text: str) -> str:
    text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub(r"\1-****-**\4", text)


def _mask_values(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask_pii(value)
    return event_dict


class _StderrLogger:
    """Writes to whatever sys.stderr is at the time (test runners swap it), one line per event."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _StderrHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream(): that flushes the old, maybe closed, stream
        super().emit(record)


def configure_logging(settings: Settings, service: str) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _mask_values,
    ]
    if settings.log_format == "json":  # on a console the supervisor prefixes each line with the time
        shared_processors.insert(2, structlog.processors.TimeStamper(fmt="iso", utc=True))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event_to=0)
    )
    structlog.configure(
        processors=[*shared_processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *args: _StderrLogger(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # libraries that log through the standard library (uvicorn, arq, alembic) use the same format
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=shared_processors,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
