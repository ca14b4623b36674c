"""Operational logs: JSON lines with bound ``execution_id``/``step_id``, secrets redacted.

Logs are not the audit trail (that is the hash-chained ``events`` table); they are for people
debugging opsbook itself. stdlib ``logging`` rather than structlog: structlog's import costs
~140 ms here, most of the CLI start-up budget (docs/adr/0003-settings-without-pydantic.md).
Nothing is configured at import time: adapters call :func:`configure`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOGGER_NAME = "opsbook"


class _JsonFormatter(logging.Formatter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        body.update(getattr(record, "context", {}) or {})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(body, default=str, ensure_ascii=False))


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """``log.bind(step_id=...)`` returns a logger carrying more context."""

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]) -> None:
        super().__init__(logger, dict(context))

    def bind(self, **more: Any) -> BoundLogger:
        return BoundLogger(self.logger, {**(self.extra or {}), **more})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        fields = kwargs.pop("fields", None) or {}
        kwargs["extra"] = {"context": {**(self.extra or {}), **fields}}
        return msg, kwargs


def get_logger(**context: Any) -> BoundLogger:
    return BoundLogger(logging.getLogger(LOGGER_NAME), context)


def configure(*, path: Path, redact: Callable[[str], str], level: int = logging.INFO) -> None:
    """Send opsbook's logs to ``path`` as JSON lines, passing every line through ``redact``."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_opsbook", False):
            logger.removeHandler(handler)
            handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(_JsonFormatter(redact))
    handler._opsbook = True  # type: ignore[attr-defined]  # marks our handler for reconfigure
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
