"""The PCI DSS 4.0.1 requirements opsbook gathers evidence for (titles paraphrased short), and
the reporting period syntax of `opsbook compliance report`."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from opsbook.errors import ValidationError

STANDARD = "pci-dss-4.0.1"

REQUIREMENTS: dict[str, str] = {
    "2.2.7": "Non-console administrative access is encrypted with strong cryptography",
    "3.4.1": "PAN is masked when displayed (at most the first six and last four digits)",
    "3.5.1": "PAN is rendered unreadable anywhere it is stored",
    "4.2.1": "Strong cryptography protects PAN in transit over open networks",
    "4.2.1.1": "An inventory of trusted keys and certificates is maintained",
    "6.2.4": "Software engineering techniques prevent common attacks and leaks",
    "6.3.1": "Security vulnerabilities are identified and ranked by risk",
    "6.3.2": "An inventory of bespoke and third-party software components is maintained",
    "6.3.3": "Known vulnerabilities are patched in time (critical within one month)",
    "6.5.1": "Changes to production follow the change procedure: reason, security impact,"
    " approval, testing evidence, back-out (the releases' change records)",
    "7.2.1": "An access control model defines access by need",
    "7.2.2": "Access is assigned by job classification with least privilege",
    "7.2.4": "User accounts and their privileges are reviewed at least every six months",
    "7.2.5": "Application and system accounts have only the privileges they need",
    "7.2.5.1": "Access of application and system accounts is reviewed periodically",
    "8.2.2": "Shared and generic accounts are used only when needed and are accountable",
    "8.2.6": "Inactive user accounts are removed or disabled within 90 days",
    "8.3.1": "All user access is authenticated",
    "8.3.2": "Authentication factors are unreadable in transmission and storage",
    "8.3.4": "Invalid authentication attempts are limited (lockout)",
    "8.3.9": "Passwords and tokens are changed or their validity is limited",
    "8.6.2": "Passwords of system accounts are not hard-coded in scripts or files",
    "8.6.3": "Passwords of system accounts are protected against misuse and changed",
    "10.2.1": "Audit logs capture user and administrative activity",
    "10.2.1.2": "Actions by anyone with administrative access are logged",
    "10.2.1.4": "Invalid logical access attempts are logged",
    "10.3.1": "Read access to audit log files is limited to a need",
    "10.3.2": "Audit log files are protected from modification",
    "10.3.4": "Change detection protects audit logs from change",
    "10.4.1": "Audit logs are reviewed at least once daily",
    "11.3.1": "Internal vulnerability scans run at least every three months",
    "11.5.2": "A change-detection mechanism alerts on changes to critical files",
    "12.10.1": "An incident response plan exists and is ready to be activated",
}


def check_requirement(req: str) -> str:
    if req not in REQUIREMENTS:
        raise ValidationError(
            f"unknown requirement {req!r} for {STANDARD}",
            field="--requirement",
            hint="`opsbook compliance requirements` lists them",
        )
    return req


def parse_period(text: str) -> tuple[datetime, datetime, str]:
    """``2026-Q4``, ``2026-11``, ``2026`` or ``2026-10-01..2026-12-31`` (end inclusive):
    [start, end) in UTC and a label."""
    t = text.strip()
    try:
        if m := re.fullmatch(r"(\d{4})-Q([1-4])", t):
            year, q = int(m[1]), int(m[2])
            start = datetime(year, 3 * q - 2, 1, tzinfo=UTC)
            end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=UTC)
        elif m := re.fullmatch(r"(\d{4})-(\d{2})", t):
            year, month = int(m[1]), int(m[2])
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + (month == 12), 1 if month == 12 else month + 1, 1, tzinfo=UTC)
        elif m := re.fullmatch(r"(\d{4})", t):
            start = datetime(int(m[1]), 1, 1, tzinfo=UTC)
            end = datetime(int(m[1]) + 1, 1, 1, tzinfo=UTC)
        elif m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", t):
            from datetime import timedelta  # noqa: PLC0415

            start = datetime.fromisoformat(m[1]).replace(tzinfo=UTC)
            end = datetime.fromisoformat(m[2]).replace(tzinfo=UTC) + timedelta(days=1)
        else:
            raise ValueError(t)
    except ValueError:
        raise ValidationError(
            f"--period {text!r} is not a period",
            field="--period",
            hint="2026-Q4, 2026-11, 2026 or 2026-10-01..2026-12-31",
        ) from None
    if end <= start:
        raise ValidationError(f"--period {text!r} ends before it starts", field="--period")
    return start, end, t
