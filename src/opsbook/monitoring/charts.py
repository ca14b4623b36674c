"""Small inline SVG charts (no JavaScript, no external files) and text sparklines."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

GREEN, RED, GREY, AMBER = "#2e7d32", "#c62828", "#bdbdbd", "#f9a825"
_BLOCKS = "▁▂▃▄▅▆▇█"


def availability_bars(
    values: Sequence[tuple[str, float | None]],
    *,
    objective: float | None,
    title: str,
    width: int = 480,
    height: int = 90,
) -> str:
    """One bar per bucket (label, availability 0..1 or None = no data). The y axis starts
    below the worst value so small dips stay visible; bars under the objective are red."""
    known = [v for _, v in values if v is not None]
    floor = min([*known, (objective or 99.0) / 100.0, 0.99]) if known else 0.99
    floor = max(0.0, floor - (1.0 - floor) * 0.2)
    n = max(1, len(values))
    bar = width / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 16}"'
        f' viewBox="0 0 {width} {height + 16}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, v) in enumerate(values):
        x = i * bar
        if v is None:
            parts.append(
                f'<rect x="{x:.1f}" y="{height - 2}" width="{max(bar - 1, 1):.1f}" height="2"'
                f' fill="{GREY}"><title>{escape(label)}: no data</title></rect>'
            )
            continue
        h = max(2.0, (v - floor) / (1.0 - floor) * height) if floor < 1 else height
        ok = objective is None or v * 100 >= objective
        colour = GREEN if ok else RED
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}"'
            f' fill="{colour}"><title>{escape(label)}: {v * 100:.3f}%</title></rect>'
        )
    if objective is not None and floor < objective / 100 < 1:
        y = height - (objective / 100 - floor) / (1 - floor) * height
        parts.append(
            f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{AMBER}"'
            f' stroke-dasharray="4 3"><title>objective {objective:g}%</title></line>'
        )
    parts.append(
        f'<text x="0" y="{height + 13}" font-size="10" fill="#555">'
        f"{escape(values[0][0]) if values else ''}"
        f" … {escape(values[-1][0]) if values else ''}, axis from {floor * 100:.2f}%</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def latency_line(
    values: Sequence[tuple[str, float | None]], *, title: str, width: int = 480, height: int = 60
) -> str:
    """A polyline of latencies (ms); gaps where there is no data."""
    known = [v for _, v in values if v is not None]
    top = max(known) if known else 1.0
    top = top or 1.0
    n = max(1, len(values) - 1)
    pts = []
    for i, (_, v) in enumerate(values):
        if v is not None:
            pts.append(f"{i * width / n:.1f},{height - v / top * (height - 4):.1f}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}"'
        f' role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{" ".join(pts)}"/>'
        f'<text x="0" y="{height + 12}" font-size="10" fill="#555">max {top:.0f} ms</text></svg>'
    )


def sparkline(values: Sequence[float | None]) -> str:
    """Text sparkline for Markdown and terminals (· where there is no data)."""
    known = [v for v in values if v is not None]
    if not known:
        return "·" * len(values)
    lo, hi = min(known), max(known)
    out = []
    for v in values:
        if v is None:
            out.append("·")
        elif hi == lo:
            out.append(_BLOCKS[-1])
        else:
            out.append(_BLOCKS[round((v - lo) / (hi - lo) * (len(_BLOCKS) - 1))])
    return "".join(out)
