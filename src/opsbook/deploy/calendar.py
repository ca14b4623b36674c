"""The change calendar, ``change_calendar.yaml``: freeze windows in which a deployment is
refused unless it is an emergency change with an extra approval (issue 11).

::

    timezone: America/New_York        # the windows' zone (default UTC)
    freezes:
      - name: daily wire cut-off
        reason: Fedwire and CHIPS cut-off
        days: [mon, tue, wed, thu, fri]  # or daily
        start: "17:30"
        end: "18:30"
      - name: month-end close
        month_days: [-2, -1, 1]          # -1 is the last day of the month
        start: "00:00"
        end: "24:00"
      - name: year-end freeze
        from: 2026-12-24T00:00:00Z
        to: 2027-01-02T00:00:00Z

Choices:

- A recurring window whose ``end`` is before its ``start`` crosses midnight (``22:00`` to
  ``02:00``); ``days``/``month_days`` name the day it starts. A typo there freezes more, never
  less. ``end`` equal to ``start`` is refused (write ``00:00`` to ``24:00`` for a whole day).
- ``days`` and ``month_days`` together: both must match (the close, on weekdays only).
  ``month_days: [31]`` does not happen in a 30-day month; use ``-1`` for the last day.
- Times are wall-clock times in ``timezone``, made aware with :mod:`zoneinfo`: a window's
  start in the hour the clocks skip begins when the clocks resume; in the hour that happens
  twice, a start is taken the first time and an end the second (the longer window).
- Occurrences of one freeze that touch are one window: ``month_days: [-2, -1, 1]`` from
  00:00 to 24:00 is one window from the second-last day to the end of the first (followed
  up to 35 days, which bounds a ``daily`` 00:00-24:00 freeze).
- ``from``/``to`` without an offset are in ``timezone``; a date alone is its midnight.
- Times must be quoted: YAML reads ``17:30`` as the number 1050.

Errors are :class:`~opsbook.errors.ValidationError` at ``change_calendar.yaml:LINE``."""

from __future__ import annotations

import calendar as _months
import difflib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.errors import UsageError

if TYPE_CHECKING:
    from opsbook.incidents._yamlfile import YamlDoc

FILE = "change_calendar.yaml"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
_TOP_KEYS = ("timezone", "freezes")
_FREEZE_KEYS = ("name", "reason", "days", "month_days", "start", "end", "from", "to")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_DAY_MINUTES = 24 * 60
_REACH = timedelta(days=35)  # how far a chain of touching occurrences is followed
_HINT = "see the change_calendar.yaml that `opsbook init` writes"


@dataclass(frozen=True)
class Freeze:
    """One occurrence of a freeze window. Its times are in the calendar's zone; to measure
    it, convert to UTC first (Python subtracts two times of one zone as wall-clock times)."""

    name: str
    reason: str
    window_start: datetime  # aware, in the calendar's zone
    window_end: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reason": self.reason,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
        }


@dataclass(frozen=True)
class FreezeWindow:
    """A freeze as written: recurring (``days``/``month_days`` with ``start``/``end`` in
    minutes after midnight) or one period (``starts``/``ends``, aware)."""

    name: str
    reason: str = ""
    days: tuple[int, ...] = ()  # 0 = Monday
    month_days: tuple[int, ...] = ()
    start_minute: int = 0
    end_minute: int = _DAY_MINUTES
    starts: datetime | None = None
    ends: datetime | None = None

    @property
    def recurring(self) -> bool:
        return self.starts is None

    def matches(self, day: date) -> bool:
        if self.days and day.weekday() not in self.days:
            return False
        if self.month_days:
            last = _months.monthrange(day.year, day.month)[1]
            wanted = {d if d > 0 else last + d + 1 for d in self.month_days}
            return day.day in wanted
        return True

    def occurrences(self, zone: tzinfo, lo: datetime, hi: datetime) -> list[Freeze]:
        """The occurrences that overlap ``[lo, hi)``."""
        if not self.recurring:
            assert self.starts is not None and self.ends is not None
            if self.starts < hi and self.ends > lo:
                return [self._freeze(self.starts, self.ends, zone)]
            return []
        # Occurrences that touch are one window (the month-end close runs from the 30th to
        # the 2nd); a chain is followed up to _REACH beyond the period asked about.
        spans: list[list[datetime]] = []
        day = (lo - _REACH).astimezone(zone).date() - timedelta(days=1)
        last = (hi + _REACH).astimezone(zone).date()
        while day <= last:
            if self.matches(day):
                start = _wall(day, self.start_minute, zone, fold=0)
                end_day = day if self.end_minute > self.start_minute else day + timedelta(1)
                end = _wall(end_day, self.end_minute, zone, fold=1)
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
            day += timedelta(days=1)
        return [self._freeze(a, b, zone) for a, b in spans if a < hi and b > lo]

    def _freeze(self, start: datetime, end: datetime, zone: tzinfo) -> Freeze:
        return Freeze(self.name, self.reason, start.astimezone(zone), end.astimezone(zone))

    def to_dict(self) -> dict[str, Any]:
        if not self.recurring:
            assert self.starts is not None and self.ends is not None
            return {
                "name": self.name,
                "reason": self.reason,
                "from": self.starts.isoformat(),
                "to": self.ends.isoformat(),
            }
        out: dict[str, Any] = {"name": self.name, "reason": self.reason}
        if self.days:
            out["days"] = "daily" if len(self.days) == 7 else [DAYS[d] for d in self.days]
        if self.month_days:
            out["month_days"] = list(self.month_days)
        out["start"] = _hhmm(self.start_minute)
        out["end"] = _hhmm(self.end_minute)
        return out


def _wall(day: date, minute: int, zone: tzinfo, *, fold: int) -> datetime:
    """``minute`` after midnight of ``day`` in ``zone``, in UTC (24:00 is the next day)."""
    extra, minute = divmod(minute, _DAY_MINUTES)
    local = datetime.combine(day + timedelta(days=extra), time(minute // 60, minute % 60))
    return local.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class Calendar:
    timezone: str = "UTC"
    windows: tuple[FreezeWindow, ...] = ()

    @property
    def zone(self) -> tzinfo:
        from zoneinfo import ZoneInfo  # noqa: PLC0415

        return ZoneInfo(self.timezone)

    def active(self, at: datetime) -> list[Freeze]:
        """The freeze occurrences in force at ``at`` (an aware datetime)."""
        at = _aware(at)
        zone = self.zone
        found = [
            f
            for w in self.windows
            for f in w.occurrences(zone, at, at + timedelta(microseconds=1))
            if f.window_start <= at < f.window_end
        ]
        return sorted(found, key=lambda f: (f.window_start, f.name))

    def upcoming(self, at: datetime, days: int = 14) -> list[Freeze]:
        """The occurrences in force at ``at`` or starting within ``days`` days after it,
        in the order they start."""
        at = _aware(at)
        if days < 0:
            raise UsageError("days must not be negative", field="days")
        zone = self.zone
        hi = at + timedelta(days=days)
        found = [f for w in self.windows for f in w.occurrences(zone, at, hi)]
        return sorted(found, key=lambda f: (f.window_start, f.name))

    def to_dict(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "freezes": [w.to_dict() for w in self.windows]}


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise UsageError(
            f"{at.isoformat()} has no time zone",
            hint="give an aware datetime (e.g. datetime.now(UTC))",
        )
    return at.astimezone(UTC)


# -- loading ----------------------------------------------------------------------------------


def load(path: Path) -> Calendar:
    """Read ``change_calendar.yaml``; a missing file is a calendar without freezes."""
    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415 - YAML with lines

    if not path.is_file():
        return Calendar()
    doc = load_yaml(path, what="the change calendar")
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error(f"{FILE} must be a mapping (timezone:, freezes:)", hint=_HINT)
    _known(doc, data, _TOP_KEYS, FILE, ())
    zone_name = data.get("timezone", "UTC")
    zone = _zone(doc, zone_name)
    raw = data.get("freezes") or []
    if not isinstance(raw, list):
        raise doc.error(
            "freezes must be a list of windows", "freezes", hint="freezes: [{name: ..., ...}]"
        )
    windows: list[FreezeWindow] = []
    for i, item in enumerate(raw):
        window = _window(doc, item, i, zone)
        if any(w.name == window.name for w in windows):
            raise doc.error(
                f"two freezes are named {window.name!r}",
                "freezes",
                i,
                "name",
                hint="give each freeze its own name",
            )
        windows.append(window)
    return Calendar(timezone=str(zone_name), windows=tuple(windows))


def _known(
    doc: YamlDoc,
    data: dict[Any, Any],
    known: tuple[str, ...],
    where: str,
    key: tuple[str | int, ...],
) -> None:
    for k in data:
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1)
            raise doc.error(
                f"{where}: unknown key {k!r}",
                *key,
                str(k),
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"the keys here are: {', '.join(known)}",
            )


def _zone(doc: YamlDoc, name: Any) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

    if isinstance(name, str) and name.strip():
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise doc.error(
        f"timezone {name!r} is not a time zone name",
        "timezone",
        hint="an IANA zone name such as America/New_York, Europe/London or UTC",
    )


def _window(doc: YamlDoc, raw: Any, i: int, zone: tzinfo) -> FreezeWindow:
    key: tuple[str | int, ...] = ("freezes", i)
    if not isinstance(raw, dict):
        raise doc.error(
            f"freeze {i + 1} must be a mapping (name, reason, days, start, end, ...)",
            *key,
            hint=_HINT,
        )
    _known(doc, raw, _FREEZE_KEYS, f"freeze {i + 1}", key)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise doc.error(f"freeze {i + 1} has no name", *key, hint="name: daily wire cut-off")
    reason = raw.get("reason", "")
    if not isinstance(reason, str):
        raise doc.error(
            f"freeze {name}: reason must be text", *key, "reason", hint="reason: why it is frozen"
        )
    what = f"freeze {name}"
    periodic = [k for k in ("days", "month_days", "start", "end") if k in raw]
    if "from" in raw or "to" in raw:
        if periodic:
            raise doc.error(
                f"{what}: from/to and {', '.join(periodic)} cannot be mixed",
                *key,
                periodic[0],
                hint="one period (from, to) or a recurring window (days or month_days, "
                "start, end): make two freezes for both",
            )
        for k in ("from", "to"):
            if k not in raw:
                raise doc.error(
                    f"{what} has no {k}", *key, hint="from: 2026-12-24T00:00:00Z, to: ..."
                )
        starts = _moment(doc, raw["from"], zone, (*key, "from"), what)
        ends = _moment(doc, raw["to"], zone, (*key, "to"), what)
        if starts >= ends:
            raise doc.error(
                f"{what}: from ({starts.isoformat()}) is not before to ({ends.isoformat()})",
                *key,
                "to",
                hint="swap them, or fix the date",
            )
        return FreezeWindow(name=name, reason=reason, starts=starts, ends=ends)
    if "days" not in raw and "month_days" not in raw:
        raise doc.error(
            f"{what}: say when it applies",
            *key,
            hint="days: [mon, tue, ...] or daily, month_days: [-1, 1], or from/to for a period",
        )
    days = _days(doc, raw["days"], (*key, "days"), what) if "days" in raw else ()
    month_days = (
        _month_days(doc, raw["month_days"], (*key, "month_days"), what)
        if "month_days" in raw
        else ()
    )
    for k in ("start", "end"):
        if k not in raw:
            raise doc.error(
                f"{what} has no {k}", *key, hint='start: "17:30", end: "18:30" (quoted)'
            )
    start = _minute(doc, raw["start"], (*key, "start"), what, allow_24=False)
    end = _minute(doc, raw["end"], (*key, "end"), what, allow_24=True)
    if start == end:
        raise doc.error(
            f"{what}: start and end are both {_hhmm(start)}",
            *key,
            "end",
            hint='for a whole day write start: "00:00", end: "24:00"',
        )
    return FreezeWindow(
        name=name,
        reason=reason,
        days=days,
        month_days=month_days,
        start_minute=start,
        end_minute=end,
    )


def _days(doc: YamlDoc, raw: Any, key: tuple[str | int, ...], what: str) -> tuple[int, ...]:
    if raw == "daily":
        return tuple(range(7))
    if not isinstance(raw, list) or not raw:
        raise doc.error(
            f"{what}: days must be a list of days or daily",
            *key,
            hint="days: [mon, tue, wed, thu, fri] or days: daily",
        )
    out: set[int] = set()
    for j, d in enumerate(raw):
        text = str(d).strip().lower()
        short = _FULL_DAYS.get(text, text)
        if short not in DAYS:
            close = difflib.get_close_matches(text, [*DAYS, *_FULL_DAYS], n=1)
            raise doc.error(
                f"{what}: {d!r} is not a day",
                *key,
                j,
                hint=(f"did you mean {close[0]}? " if close else "")
                + f"days: {', '.join(DAYS)} (or daily)",
            )
        out.add(DAYS.index(short))
    return tuple(sorted(out))


def _month_days(doc: YamlDoc, raw: Any, key: tuple[str | int, ...], what: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise doc.error(
            f"{what}: month_days must be a list of days of the month",
            *key,
            hint="month_days: [-2, -1, 1] (the last two days and the first)",
        )
    for j, d in enumerate(raw):
        if not isinstance(d, int) or isinstance(d, bool) or d == 0 or not -31 <= d <= 31:
            raise doc.error(
                f"{what}: {d!r} is not a day of the month",
                *key,
                j,
                hint="1 to 31, or -1 (the last day) to -31",
            )
    return tuple(sorted(set(raw)))


def _minute(
    doc: YamlDoc, raw: Any, key: tuple[str | int, ...], what: str, *, allow_24: bool
) -> int:
    name = str(key[-1])
    if isinstance(raw, int) and not isinstance(raw, bool):
        raise doc.error(
            f'{what}: {name} must be a quoted time such as "17:30" (YAML read {raw!r})',
            *key,
            hint=f'quote it: {name}: "17:30" (without quotes YAML reads 17:30 as a number)',
        )
    m = _HHMM.fullmatch(str(raw).strip()) if isinstance(raw, str) else None
    if m is not None:
        hours, minutes = int(m.group(1)), int(m.group(2))
        if (hours < 24 and minutes < 60) or (allow_24 and hours == 24 and minutes == 0):
            return hours * 60 + minutes
    top = '"00:00" to "24:00"' if allow_24 else '"00:00" to "23:59"'
    raise doc.error(
        f"{what}: {name} {raw!r} is not a time of day",
        *key,
        hint=f"HH:MM from {top}, quoted",
    )


def _moment(
    doc: YamlDoc, raw: Any, zone: tzinfo, key: tuple[str | int, ...], what: str
) -> datetime:
    value: datetime | None = None
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, date):
        value = datetime.combine(raw, time())
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            value = None
    if value is None:
        raise doc.error(
            f"{what}: {key[-1]} {raw!r} is not a date and time",
            *key,
            hint="ISO 8601: 2026-12-24T00:00:00Z (an offset, or the calendar's timezone)",
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)
