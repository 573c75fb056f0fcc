"""Structured logs: JSON lines by default (one object per line, for collectors), or a
console rendering for people. ``configure_logging`` is called once at start.

Prompt text and secrets never reach a log line: callers log ids, counts and sizes, and the
``_redact`` processor below is the backstop for a key that slips through (it replaces the
value of any prompt-like or secret-like key). Records from the standard ``logging`` module
(gRPC, asyncio) go through the same renderer, so the output stays one format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from skinflint.config import LoggingConfig

#: Keys whose values may be prompt text; never logged.
PROMPT_KEYS = frozenset(
    {"prompt", "text", "messages", "message_text", "content", "system", "input_json", "input"}
)
#: Substrings that mark a key as a secret.
SECRET_MARKERS = ("api_key", "apikey", "secret", "password", "authorization", "credential")
REDACTED = "[redacted]"
#: Standard-library loggers that log every HTTP request at INFO; kept to WARNING unless the
#: level is DEBUG.
QUIET_BELOW_DEBUG = ("httpx2", "httpcore2", "httpx", "httpcore")


def _redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    for key in list(event_dict):
        lowered = key.lower()
        if lowered in PROMPT_KEYS or any(marker in lowered for marker in SECRET_MARKERS):
            event_dict[key] = REDACTED
    return event_dict


def configure_logging(cfg: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr by default) in one format."""
    stream = sys.stderr if stream is None else stream
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any
    if cfg.format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDKs' HTTP client logs one INFO line per provider request ("HTTP Request: POST
    # ..."): noise at INFO, and rendering it is a measurable share of a call's CPU
    # (bench/overhead.py). Shown at DEBUG; warnings and errors always.
    for name in QUIET_BELOW_DEBUG:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)


def get_logger(component: str) -> Any:
    """A structured logger tagged with the component that logs (``server``, ``app``, ...)."""
    return structlog.get_logger(component=component)
