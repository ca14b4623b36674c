"""Template values on their way into a block: the placeholder each ``{{ … }}`` renders to
(``NUL index NUL``) and how a value reads as text."""

from __future__ import annotations

import re
from typing import Any

PH = "\x00"
PLACEHOLDER = re.compile(r"\x00(\d+)\x00")


def text_of(value: Any) -> str:
    """How a template value reads as text: None → empty, booleans → true/false, mappings and
    lists → JSON, everything else ``str``."""
    import json  # noqa: PLC0415 - only needed for structured values

    if isinstance(value, str):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)
