"""The change calendar: freeze windows in the workspace's zone, daylight saving followed,
windows across midnight and month ends, and every mistake reported at file:line."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from opsbook.deploy import calendar
from opsbook.deploy.calendar import Calendar
from opsbook.errors import UsageError, ValidationError

TEMPLATE = Path(calendar.__file__).parents[1] / "workspace" / "templates" / "change_calendar.yaml"
NY = ZoneInfo("America/New_York")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "change_calendar.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def names(freezes: list[calendar.Freeze]) -> list[str]:
    return [f.name for f in freezes]


@pytest.fixture
def bank() -> Calendar:
    return calendar.load(TEMPLATE)


def test_the_template_has_the_wire_cut_off_and_the_month_end_close(bank: Calendar) -> None:
    assert bank.timezone == "America/New_York"
    assert bank.to_dict()["freezes"] == [
        {
            "name": "daily wire cut-off",
            "reason": "Fedwire and CHIPS cut-off; no changes while wires settle",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "17:30",
            "end": "18:30",
        },
        {
            "name": "month-end close",
            "reason": "finance closes the books",
            "month_days": [-2, -1, 1],
            "start": "00:00",
            "end": "24:00",
        },
    ]


def test_a_missing_file_has_no_freezes(tmp_path: Path) -> None:
    cal = calendar.load(tmp_path / "change_calendar.yaml")
    assert cal.windows == () and cal.timezone == "UTC"
    assert cal.active(datetime(2026, 3, 31, tzinfo=UTC)) == []


def test_the_wire_cut_off_follows_new_york_wall_clock_time(bank: Calendar) -> None:
    winter = datetime(2026, 1, 14, 22, 45, tzinfo=UTC)  # Wednesday 17:45 EST
    summer = datetime(2026, 7, 15, 21, 45, tzinfo=UTC)  # Wednesday 17:45 EDT
    for at in (winter, summer):
        (freeze,) = bank.active(at)
        assert freeze.name == "daily wire cut-off"
        assert freeze.reason.startswith("Fedwire and CHIPS")
        local = at.astimezone(NY)
        assert freeze.window_start == local.replace(minute=30)
        assert freeze.window_end == local.replace(hour=18, minute=30)
        assert freeze.window_start.tzinfo is not None
    # the same UTC time in the other season is an hour off the window
    assert bank.active(datetime(2026, 7, 15, 22, 45, tzinfo=UTC)) == []  # 18:45 EDT
    assert bank.active(datetime(2026, 1, 14, 21, 45, tzinfo=UTC)) == []  # 16:45 EST


def test_window_edges_weekends_and_to_dict(bank: Calendar) -> None:
    start = datetime(2026, 1, 14, 17, 30, tzinfo=NY)
    assert names(bank.active(start)) == ["daily wire cut-off"]  # start is inside
    assert bank.active(start - timedelta(seconds=1)) == []
    assert bank.active(start + timedelta(hours=1)) == []  # end is outside
    assert bank.active(datetime(2026, 1, 17, 17, 45, tzinfo=NY)) == []  # Saturday
    (freeze,) = bank.active(start)
    assert freeze.to_dict() == {
        "name": "daily wire cut-off",
        "reason": "Fedwire and CHIPS cut-off; no changes while wires settle",
        "window_start": "2026-01-14T17:30:00-05:00",
        "window_end": "2026-01-14T18:30:00-05:00",
    }


def test_the_month_end_close_is_one_window_across_the_month_boundary(bank: Calendar) -> None:
    # 2026: February has 28 days, so -2 and -1 are the 27th and 28th
    (close,) = bank.active(datetime(2026, 2, 27, 9, 0, tzinfo=NY))
    assert close.name == "month-end close"
    assert close.window_start == datetime(2026, 2, 27, 0, 0, tzinfo=NY)
    assert close.window_end == datetime(2026, 3, 2, 0, 0, tzinfo=NY)
    assert bank.active(datetime(2026, 2, 26, 23, 59, tzinfo=NY)) == []
    assert bank.active(datetime(2026, 3, 2, 0, 0, tzinfo=NY)) == []
    # 2028 is a leap year: the 28th and 29th
    (leap,) = bank.active(datetime(2028, 2, 28, 12, 0, tzinfo=NY))
    assert leap.window_start == datetime(2028, 2, 28, 0, 0, tzinfo=NY)
    assert bank.active(datetime(2028, 2, 27, 12, 0, tzinfo=NY)) == []
    # a weekday's cut-off inside the close: both are in force
    both = bank.active(datetime(2026, 3, 31, 17, 45, tzinfo=NY))
    assert names(both) == ["month-end close", "daily wire cut-off"]


def test_upcoming_lists_what_is_in_force_and_what_starts_next(bank: Calendar) -> None:
    at = datetime(2026, 3, 27, 12, 0, tzinfo=NY)  # a Friday, before the close
    found = bank.upcoming(at, days=7)
    starts = [(f.name, f.window_start.date().isoformat()) for f in found]
    assert starts == [
        ("daily wire cut-off", "2026-03-27"),
        ("month-end close", "2026-03-30"),
        ("daily wire cut-off", "2026-03-30"),
        ("daily wire cut-off", "2026-03-31"),
        ("daily wire cut-off", "2026-04-01"),
        ("daily wire cut-off", "2026-04-02"),
    ]
    inside = bank.upcoming(datetime(2026, 3, 31, 9, 0, tzinfo=NY), days=0)
    assert names(inside) == ["month-end close"]
    with pytest.raises(UsageError):
        bank.upcoming(at, days=-1)


def test_a_naive_time_is_refused(bank: Calendar) -> None:
    with pytest.raises(UsageError, match="no time zone"):
        bank.active(datetime(2026, 3, 31, 12, 0))  # naive: the mistake under test


def test_windows_across_midnight_and_daylight_saving(tmp_path: Path) -> None:
    cal = calendar.load(
        write(
            tmp_path,
            """\
            timezone: America/New_York
            freezes:
              - name: batch
                days: [fri]
                start: "22:00"
                end: "02:00"
              - name: early
                days: daily
                start: "01:00"
                end: "04:00"
              - name: twice
                days: [sun]
                start: "01:30"
                end: "01:45"
            """,
        )
    )
    (batch,) = [f for f in cal.active(datetime(2026, 1, 17, 1, 30, tzinfo=NY)) if f.name == "batch"]
    assert batch.window_start == datetime(2026, 1, 16, 22, 0, tzinfo=NY)  # Friday night
    assert batch.window_end == datetime(2026, 1, 17, 2, 0, tzinfo=NY)

    def length(day: datetime, name: str) -> timedelta:
        (f,) = [f for f in cal.upcoming(day, days=1) if f.name == name]
        # in UTC: Python subtracts two times of one zone as wall-clock times
        return f.window_end.astimezone(UTC) - f.window_start.astimezone(UTC)

    # 2026-03-08: clocks go 02:00 -> 03:00; 2026-11-01: 02:00 -> 01:00
    spring = datetime(2026, 3, 8, 0, 0, tzinfo=NY)
    autumn = datetime(2026, 11, 1, 0, 0, tzinfo=NY)
    assert length(spring, "early") == timedelta(hours=2)
    assert length(autumn, "early") == timedelta(hours=4)
    # 01:30-01:45 on the day 01:xx happens twice: from the first 01:30 to the second 01:45
    assert length(autumn, "twice") == timedelta(hours=1, minutes=15)
    second_pass = datetime(2026, 11, 1, 6, 40, tzinfo=UTC)  # 01:40 EST, the second time
    assert "twice" in names(cal.active(second_pass))


def test_a_one_off_period(tmp_path: Path) -> None:
    cal = calendar.load(
        write(
            tmp_path,
            """\
            timezone: Europe/London
            freezes:
              - name: year-end freeze
                reason: year-end processing
                from: 2026-12-24T00:00:00Z
                to: 2027-01-02T00:00:00Z
              - name: audit
                from: "2026-06-01 09:00"
                to: 2026-06-02
            """,
        )
    )
    (year_end,) = cal.active(datetime(2026, 12, 31, 12, 0, tzinfo=UTC))
    assert year_end.name == "year-end freeze"
    assert year_end.window_end == datetime(2027, 1, 2, tzinfo=UTC)
    assert cal.active(datetime(2027, 1, 2, tzinfo=UTC)) == []
    # no offset: London time (BST in June)
    (audit,) = cal.active(datetime(2026, 6, 1, 8, 30, tzinfo=UTC))
    assert audit.window_start == datetime(2026, 6, 1, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    assert cal.to_dict()["freezes"][0]["from"] == "2026-12-24T00:00:00+00:00"


BAD = [
    # (file text, line, words in the message, words in the hint)
    ("timezone: Mars/Olympus\n", 1, "is not a time zone name", "America/New_York"),
    ("freezes:\n  - name: a\n    reson: x\n", 3, "unknown key 'reson'", "did you mean 'reason'"),
    ("holidays: []\n", 1, "unknown key 'holidays'", "timezone, freezes"),
    (
        'freezes:\n  - name: a\n    days: [mon, thurs]\n    start: "1:00"\n    end: "2:00"\n',
        3,
        "'thurs' is not a day",
        "did you mean thu",
    ),
    (
        'freezes:\n  - name: a\n    days: weekly\n    start: "1:00"\n    end: "2:00"\n',
        3,
        "days must be a list of days or daily",
        "days: daily",
    ),
    (
        'freezes:\n  - name: a\n    days: daily\n    start: "25:00"\n    end: "26:00"\n',
        4,
        "start '25:00' is not a time of day",
        '"00:00" to "23:59"',
    ),
    (
        'freezes:\n  - name: a\n    days: daily\n    start: "10:00"\n    end: "10:60"\n',
        5,
        "end '10:60' is not a time of day",
        '"24:00"',
    ),
    (
        "freezes:\n  - name: a\n    days: daily\n    start: 17:30\n    end: 18:30\n",
        4,
        'start must be a quoted time such as "17:30" (YAML read 1050)',
        'start: "17:30"',
    ),
    (
        'freezes:\n  - name: a\n    days: daily\n    start: "10:00"\n    end: "10:00"\n',
        5,
        "start and end are both 10:00",
        '"24:00"',
    ),
    (
        'freezes:\n  - name: a\n    days: daily\n    start: "10:00"\n',
        2,
        "freeze a has no end",
        "quoted",
    ),
    ('freezes:\n  - name: a\n    start: "10:00"\n    end: "11:00"\n', 2, "say when", "daily"),
    (
        'freezes:\n  - name: a\n    month_days: [0]\n    start: "00:00"\n    end: "24:00"\n',
        3,
        "0 is not a day of the month",
        "-1 (the last day)",
    ),
    (
        "freezes:\n  - name: a\n    from: 2027-01-02T00:00:00Z\n    to: 2026-12-24T00:00:00Z\n",
        4,
        "is not before to",
        "swap",
    ),
    (
        "freezes:\n  - name: a\n    from: christmas\n    to: 2026-12-24T00:00:00Z\n",
        3,
        "from 'christmas' is not a date and time",
        "ISO 8601",
    ),
    (
        "freezes:\n  - name: a\n    from: 2026-12-24\n    to: 2026-12-25\n    days: daily\n",
        5,
        "from/to and days cannot be mixed",
        "two freezes",
    ),
    ("freezes:\n  - reason: no name\n", 2, "freeze 1 has no name", "name:"),
    (
        "freezes:\n  - {name: a, from: 2026-01-01, to: 2026-01-02}\n"
        "  - {name: a, from: 2026-02-01, to: 2026-02-02}\n",
        3,
        "two freezes are named 'a'",
        "own name",
    ),
    ("freezes: {name: a}\n", 1, "freezes must be a list", "freezes:"),
]


@pytest.mark.parametrize(("text", "line", "message", "hint"), BAD)
def test_mistakes_are_reported_at_their_line(
    tmp_path: Path, text: str, line: int, message: str, hint: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValidationError) as caught:
        calendar.load(path)
    err = caught.value
    assert err.exit_code == 2
    assert message in err.message, err.render()
    assert err.hint is not None and hint in err.hint, err.render()
    assert err.location is not None
    assert (err.location.path, err.location.line) == (str(path), line), err.render()
