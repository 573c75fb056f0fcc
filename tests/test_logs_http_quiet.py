"""``configure_logging`` keeps the HTTP client's per-request INFO lines out of the log (one
per provider call is noise and costs CPU on the hot path) unless the level is DEBUG."""

from __future__ import annotations

import io
import logging

from skinflint.config import LoggingConfig
from skinflint.logs import configure_logging


def test_http_client_request_lines_only_at_debug() -> None:
    for level, shown in (("info", False), ("debug", True)):
        out = io.StringIO()
        configure_logging(LoggingConfig(level=level), stream=out)
        logging.getLogger("httpx2").info("HTTP Request: POST http://127.0.0.1/v1/chat/completions")
        logging.getLogger("httpx2").warning("a warning from the HTTP client")
        logging.getLogger("grpc").info("an info line from another library")
        text = out.getvalue()
        assert ("HTTP Request" in text) is shown
        assert "a warning from the HTTP client" in text
        assert "an info line from another library" in text
    configure_logging(LoggingConfig())
