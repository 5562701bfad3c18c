"""``report --html``: one self-contained HTML file (inline CSS and SVG, no script, no network).

It shows the numbers the journal holds: calls per minute against the quota the campaign ran
with (per sender when the journal records several), outcomes over time, the final counts, the
failed, unknown and invalid entries with their reasons, and the campaign's rules changed on
purpose (#15: the audit trail, as ``report`` prints it). It holds phone numbers: it is
written owner-only, like the CSV.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

# This module is imported only when ``report --html`` runs, so the journal is loaded already.
from ryze_async._campaign.journal.schema import open_owner_only

if TYPE_CHECKING:
    from ryze_async._campaign.journal import JournalCounts, RuleChange
    from ryze_async._campaign.journal.sqlite.report import MinuteCount, ReportData

__all__ = ["render_report", "write_report"]

_COLORS = {"placed": "#2e7d32", "failed": "#c62828", "unknown": "#ef6c00",
           "pending": "#607d8b", "sending": "#6a1b9a", "skipped": "#9e9e9e",
           "invalid": "#795548"}
#: (calls, period in seconds) of one sender; None: no quota known, no line drawn.
Quota = tuple[float, float] | None
_OUTCOMES = ("placed", "failed", "unknown")
_W, _H, _PAD = 1100, 260, 48
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.muted{color:#666}table{border-collapse:collapse}td,th{padding:4px 10px;text-align:left;
border-bottom:1px solid #ddd}#counts td{font-variant-numeric:tabular-nums;font-size:18px}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;
height:12px;margin-right:4px;vertical-align:-1px}svg{background:#fafafa;border:1px solid #eee}
svg text{font:11px sans-serif;fill:#555}
"""


def _minute_label(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")


def _span(minutes: Iterable[MinuteCount]) -> list[int]:
    found = sorted({m.minute for m in minutes})
    return list(range(found[0], found[-1] + 1)) if found else []


def _slot(span: Sequence[int]) -> float:
    """Each minute's width: the plot's width shared out, at most 90 px (a short run's bars
    stay bars)."""
    return min((_W - _PAD - 8) / len(span), 90.0)


def _axes(span: Sequence[int], top: float, unit: str) -> list[str]:
    parts = [f'<line x1="{_PAD}" y1="{_H - 24}" x2="{_W - 8}" y2="{_H - 24}" stroke="#999"/>',
             f'<text x="4" y="14">{top:g} {unit}</text>']
    step = max(1, len(span) // 12)
    for i in range(0, len(span), step):
        x = _PAD + (i + 0.5) * _slot(span)
        parts.append(f'<text x="{x:.1f}" y="{_H - 8}" text-anchor="middle">'
                     f"{_minute_label(span[i])}</text>")
    return parts


def _quota_line(quota: Quota, senders: int, scale: float) -> str:
    if quota is None:
        return ""
    calls, period = quota
    per_minute = calls * 60 / period * senders
    label = f"quota {calls:g} calls per {period:g}s" + (
        f" per sender, {senders} senders" if senders > 1 else "")
    qy = _H - 24 - per_minute * scale
    return (f'<line class="quota" data-per-minute="{per_minute:g}" x1="{_PAD}" y1="{qy:.1f}" '
            f'x2="{_W - 8}" y2="{qy:.1f}" stroke="#1565c0" stroke-dasharray="6 4"/>'
            f'<text x="{_W - 8}" y="{qy - 4:.1f}" text-anchor="end" fill="#1565c0">'
            f"{escape(label)}</text>")


def _bars(svg_id: str, minutes: Sequence[MinuteCount], quota: Quota) -> str:
    """Stacked bars of numbers per minute by outcome, and the quota as a dashed line (every
    sender's, added up)."""
    span = _span(minutes)
    if not span:
        return (f'<svg id="{svg_id}" width="{_W}" height="60" role="img"><text x="10" y="34">'
                "no call attempted yet</text></svg>")
    per: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in minutes:
        per[m.minute][m.state] += m.n
    senders = max(1, len({m.sender for m in minutes}))
    line = 0.0 if quota is None else quota[0] * 60 / quota[1] * senders
    top = max(line, *(sum(v.values()) for v in per.values()))
    plot_h, slot = _H - 24 - 20, _slot(span)
    scale = plot_h / top
    parts = _axes(span, top, "/min")
    for i, minute in enumerate(span):
        y = _H - 24.0
        for state, n in sorted(per[minute].items()):
            h = n * scale
            y -= h
            parts.append(f'<rect class="bar" data-minute="{minute}" data-state="{state}" '
                         f'data-n="{n}" x="{_PAD + i * slot + 1:.1f}" y="{y:.1f}" '
                         f'width="{max(slot - 2, 1):.1f}" height="{h:.1f}" '
                         f'fill="{_COLORS.get(state, "#333")}"><title>{_minute_label(minute)}'
                         f" {escape(state)}: {n}</title></rect>")
    parts.append(_quota_line(quota, senders, scale))
    return (f'<svg id="{svg_id}" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
            f'role="img">{"".join(parts)}</svg>')


def _over_time(minutes: Sequence[MinuteCount]) -> str:
    """Cumulative numbers per outcome, minute by minute."""
    span = _span(minutes)
    if not span:
        return '<svg id="over-time" width="300" height="40" role="img"></svg>'
    per: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for m in minutes:
        per[m.state][m.minute] += m.n
    totals = {s: sum(v.values()) for s, v in per.items()}
    top = max(totals.values())
    plot_h, slot = _H - 24 - 20, _slot(span)
    parts = _axes(span, top, "numbers")
    for state in sorted(per):
        running, points = 0, [f"{_PAD},{_H - 24}"]
        for i, minute in enumerate(span):
            running += per[state][minute]
            points.append(f"{_PAD + (i + 0.5) * slot:.1f},{_H - 24 - running * plot_h / top:.1f}")
        parts.append(f'<polyline class="line" data-state="{escape(state)}" '
                     f'data-total="{running}" fill="none" stroke-width="2.5" '
                     f'stroke="{_COLORS.get(state, "#333")}" points="{" ".join(points)}"/>')
    return (f'<svg id="over-time" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
            f'role="img">{"".join(parts)}</svg>')


def _legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{_COLORS[s]}"></i>{s}</span>' for s in _OUTCOMES) + "</p>"


_HEADS = {"held": "of which waiting for a window"}


def _counts(counts: JournalCounts) -> str:
    cells = [("total", counts.total), ("placed", counts.placed), ("failed", counts.failed),
             ("unknown", counts.unknown), ("pending", counts.pending + counts.sending),
             ("held", counts.held), ("invalid", counts.invalid), ("duplicates", counts.duplicates),
             ("removed", counts.removed), ("excluded", counts.excluded),
             ("expired", counts.expired)]
    head = "".join(f"<th>{_HEADS.get(name, name)}</th>" for name, _ in cells)
    body = "".join(f'<td data-count="{name}">{n}</td>' for name, n in cells)
    return f'<table id="counts"><tr>{head}</tr><tr>{body}</tr></table>'


def _problems(data: ReportData) -> str:
    if not data.problems:
        return '<p id="no-problems">No failed, unknown or invalid entries.</p>'
    sender = "<th>sender</th>" if data.has_senders else ""
    rows = []
    for p in data.problems:
        when = datetime.fromtimestamp(p.at, UTC).isoformat(timespec="seconds") if p.at else ""
        extra = f"<td>{escape(p.sender)}</td>" if data.has_senders else ""
        rows.append(f'<tr class="problem" data-state="{escape(p.state)}"><td>{p.line or ""}'
                    f'</td><td class="number">{escape(p.number)}</td><td>{escape(p.state)}</td>'
                    f"<td>{escape(p.reason)}</td><td>{p.http_status or ''}</td>"
                    f"<td>{p.attempts}</td><td>{when}</td>{extra}</tr>")
    return ('<table id="problems"><tr><th>line</th><th>number</th><th>state</th><th>reason'
            "</th><th>HTTP</th><th>attempts</th><th>last attempt (UTC)</th>"
            f"{sender}</tr>{''.join(rows)}</table>")


def _rule_changes(trail: Sequence[RuleChange]) -> str:
    if not trail:
        return '<p id="no-rule-changes">No rule was changed since the campaign began.</p>'
    rows = "".join(
        f'<tr class="rule-change"><td>{c.at.astimezone(UTC).isoformat()}</td>'
        f"<td>{escape(c.rule)}</td><td>{escape(c.old)}</td><td>{escape(c.new)}</td></tr>"
        for c in trail)
    return ('<table id="rule-changes"><tr><th>changed at (UTC)</th><th>rule</th><th>old</th>'
            f"<th>new</th></tr>{rows}</table>")


def _per_sender(data: ReportData, quota: Quota) -> str:
    senders = sorted({m.sender for m in data.minutes})
    if not data.has_senders or len(senders) < 2:
        return ""
    out = ["<h2>Calls per minute, per sender</h2>"]
    for i, sender in enumerate(senders):
        mine = [m for m in data.minutes if m.sender == sender]
        out.append(f"<h3>{escape(sender)}</h3>{_bars(f'per-minute-{i}', mine, quota)}")
    return "".join(out)


def render_report(name: str, counts: JournalCounts, data: ReportData, quota: Quota,
                  trail: Sequence[RuleChange] = ()) -> str:
    """The whole page; ``quota`` is one sender's (calls, period in seconds), None: unknown;
    ``trail`` the rules changed on purpose, oldest first."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>ryze-async report: {escape(name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Campaign report: {escape(name)}</h1><p class=\"muted\">Generated {now}; it holds"
        " phone numbers: keep it private.</p><h2>Counts</h2>" + _counts(counts)
        + "<h2>Calls per minute against the quota</h2><p class=\"muted\">Numbers by the minute "
        "of their last attempt and the state it left them in.</p>" + _legend()
        + _bars("per-minute", data.minutes, quota) + _per_sender(data, quota)
        + "<h2>Outcomes over time</h2>" + _legend() + _over_time(data.minutes)
        + "<h2>Failed, unknown and invalid entries</h2>" + _problems(data)
        + "<h2>Rules changed on purpose</h2>" + _rule_changes(trail) + "</body></html>\n"
    )


def write_report(path: Path, page: str) -> None:
    """Write ``page`` owner-only (0600), as the other exports: it holds phone numbers."""
    with open_owner_only(path) as f:
        f.write(page)
