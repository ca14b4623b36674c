"""Primary account numbers (card numbers) in text: an issuer prefix, a length that fits it, and
the Luhn check digit; shown only masked (first six, last four: PCI DSS 3.4.1)."""

from __future__ import annotations

import re

#: 13 to 19 digits, optionally in groups split by one space or dash, not inside a longer number
_CANDIDATE = re.compile(rb"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _issuer_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if d.startswith(("6011", "65")) or 644 <= int(d[:3]) <= 649:
        return 16 <= n <= 19
    if 3528 <= four <= 3589:  # JCB
        return 16 <= n <= 19
    return False


def mask(digits: str) -> str:
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


def find_pans(data: bytes) -> list[tuple[int, str]]:
    """(byte offset, masked number) of each card number in ``data``."""
    out = []
    for m in _CANDIDATE.finditer(data):
        digits = re.sub(rb"[ -]", b"", m.group()).decode()
        if _issuer_ok(digits) and luhn(digits):
            out.append((m.start(), mask(digits)))
    return out
