"""The dashboard's HTML: one layout, a function per page, every value escaped.

Pure: each function takes the data of cmux/dashboard/views.py and returns
a string. The DOM hooks (``data-agent``, ``data-field``, ids) are the ones
docs/DASHBOARD.md and the browser tests rely on; static/dashboard.js patches
the same elements from the live stream, with the cells ``cells`` makes here
(one formatting for the first load and the live updates).
"""

from __future__ import annotations

import json
import time
from html import escape
from typing import Any

from cmux.agents.cost import short
from cmux.text import sanitize

NAV = ("team", "mail", "journal", "health", "cost", "events")
ALERT_STATES = frozenset(
    {"waiting", "stuck", "crashed", "blocked", "rate-limited", "overloaded", "auth-error"}
)
TEAM_FIELDS = (
    "role",
    "program",
    "host",
    "state",
    "task",
    "age",
    "tokens",
    "unread",
    "held",
    "queue",
)


def e(value: Any) -> str:
    """Stored text made safe for the terminal rules (sanitize) and for HTML."""
    return escape(sanitize("" if value is None else str(value)), quote=True)


def layout(page: str, title: str, body: str, *, token: str) -> str:
    links = "".join(
        f'<a data-nav="{n}" href="/{n}"{" class=current" if n == page else ""}>{n}</a>' for n in NAV
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>cmux · {e(title)}</title>"
        f'<meta name="cmux-token" content="{e(token)}">'
        '<link rel=stylesheet href="/static/style.css">'
        f'</head><body data-page="{e(page)}"><header><b>cmux</b> <nav>{links}</nav>'
        '<span id="live" title="live updates">○</span></header>'
        f'<main>{body}</main><div id="toast" role="status"></div>'
        '<script src="/static/dashboard.js"></script></body></html>'
    )


# -- the team ---------------------------------------------------------------------------


def age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def cells(row: dict[str, Any], preview: str | None = None) -> dict[str, str]:
    """The text of each field of an agent's row (the JS sets the same)."""
    tokens = row.get("tokens")
    unread = row.get("unread")
    out = {
        "role": str(row.get("role") or ""),
        "program": str(row.get("profile") or ""),
        "host": str(row.get("host") or ""),  # blank: this host
        "state": str(row.get("state") or ""),
        "task": str(row.get("task") or ""),
        "age": age(float(row.get("age_seconds") or 0)),
        "tokens": short(int(tokens.get("total", 0))) if isinstance(tokens, dict) else "-",
        "unread": "-" if unread is None else str(unread),
        "held": str(row.get("held") or 0),
        "queue": str(row.get("queue") or "-"),
    }
    if preview is not None:
        out["preview"] = preview
    return out


def is_alert(row: dict[str, Any]) -> bool:
    return str(row.get("state")) in ALERT_STATES


def agent_row(row: dict[str, Any], preview: str) -> str:
    c = cells(row, preview)
    name = e(row["name"])
    tds = (
        f'<td class=name><a href="/agent/{name}">{name}</a></td>'
        + "".join(f'<td data-field="{f}">{e(c[f])}</td>' for f in TEAM_FIELDS)
        + f'<td><pre data-field="preview">{e(c["preview"])}</pre></td>'
    )
    cls = ' class="alert"' if is_alert(row) else ""
    return f'<tr data-agent="{name}" data-state="{e(row.get("state"))}"{cls}>{tds}</tr>'


def team(rows: list[dict[str, Any]], previews: dict[str, str], header: str) -> str:
    head = "".join(f"<th>{f}</th>" for f in ("name", *TEAM_FIELDS, "preview"))
    body = "".join(agent_row(r, previews.get(r["name"], "")) for r in rows)
    empty = "" if rows else "<p class=empty>no agents yet: <code>cmux start</code></p>"
    return (
        f'<h1>team</h1><pre id="header">{e(header)}</pre>{empty}'
        f'<table id="team"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def agent(name: str, row: dict[str, Any] | None, screen: str, context: str, hist: list) -> str:
    state = e(row.get("state")) if row else "?"
    buttons = "".join(
        f'<button data-action="{a}" data-agent="{e(name)}">{a}</button>'
        for a in ("approve", "deny", "kill")
    )
    return (
        f'<h1>{e(name)} <small data-field="state">{state}</small></h1>'
        f"<div class=actions>{buttons}</div>"
        f'<h2>screen</h2><pre id="screen">{e(screen)}</pre>'
        f'<h2>context file</h2><pre id="context">{e(context)}</pre>'
        f'<h2>history</h2><table id="history"><tbody>'
        + "".join(event_row(x) for x in hist)
        + "</tbody></table>"
    )


# -- mail -------------------------------------------------------------------------------


def mail_row(m: dict[str, Any]) -> str:
    t = m.get("trail") or {}
    trail = " · ".join(f"{k} {str(v)[11:19]}" for k, v in t.items() if v) or "sent"
    return (
        f'<tr data-mail-id="{e(m["id"])}" data-kind="{e(m.get("kind"))}" '
        f'data-from="{e(m.get("from"))}" data-to="{e(m.get("to"))}">'
        f"<td class=ts>{e(str(m.get('ts'))[11:19])}</td>"
        f'<td data-field="from">{e(m.get("from"))}</td><td data-field="to">{e(m.get("to"))}</td>'
        f'<td data-field="kind">{e(m.get("kind"))}</td>'
        f'<td><pre data-field="body">{e(m.get("body"))}</pre></td>'
        f'<td data-field="trail">{e(trail)}</td></tr>'
    )


def options(names: list[str], chosen: str | None, blank: str) -> str:
    out = [f'<option value="">{e(blank)}</option>'] if blank else []
    for n in names:
        sel = " selected" if n == chosen else ""
        out.append(f'<option value="{e(n)}"{sel}>{e(n)}</option>')
    return "".join(out)


KINDS = ("message", "done", "blocked", "status", "notice", "alert")


def mail(
    msgs: list[dict[str, Any]],
    dead: list[dict[str, Any]],
    names: list[str],
    agent: str | None,
    kind: str | None,
) -> str:
    rows = "".join(mail_row(m) for m in msgs)
    dl = "".join(
        f'<tr data-deadletter="{e(d["id"])}"><td>{e(d["ts"])}</td><td>{e(d["to"])}</td>'
        f'<td>{e(d["id"])}</td><td data-field="reason">{e(d["reason"])}</td></tr>'
        for d in dead
    )
    everyone = sorted({*names, "human"})
    return (
        "<h1>mail</h1>"
        '<form id="send-form" class=send onsubmit="return false">'
        f'<label>to <select id="send-to">{options(names, None, "")}</select></label>'
        '<textarea id="send-body" rows=3 placeholder="a message, sent as human"></textarea>'
        '<button id="send-submit" type="button">send</button></form>'
        '<form method=get action="/mail" class=filters>'
        f'<select id="mail-agent" name="agent" onchange="this.form.submit()">'
        f"{options(everyone, agent, 'every agent')}</select>"
        f'<select id="mail-kind" name="kind" onchange="this.form.submit()">'
        f"{options(list(KINDS), kind, 'every kind')}</select></form>"
        '<table id="mail"><thead><tr><th>at</th><th>from</th><th>to</th><th>kind</th>'
        f"<th>body</th><th>trail</th></tr></thead><tbody>{rows}</tbody></table>"
        '<h2>dead letters</h2><table id="deadletter"><thead><tr><th>at</th><th>for</th>'
        f"<th>entry</th><th>reason</th></tr></thead><tbody>{dl}</tbody></table>"
    )


# -- journal ----------------------------------------------------------------------------


def snippet(text: str) -> str:
    """A search snippet: the matches (between \\x02 and \\x03) as <mark>."""
    out = []
    for i, part in enumerate(text.split("\x02")):
        hit, _, rest = part.partition("\x03") if i else ("", "", part)
        out.append((f"<mark>{e(hit)}</mark>" if i else "") + e(rest))
    return "".join(out)


def journal(j: dict[str, Any]) -> str:
    hits = "".join(
        f'<li data-journal-hit="{i}"><b>{e(h["title"])}</b> <small>{e(h["date"])} '
        f"{e(h['time'])} {e(h['agent'])}</small><div class=snippet>"
        f"{snippet(h['snippet'])}</div></li>"
        for i, h in enumerate(j["hits"])
    )
    recent = "".join(
        f"<li data-journal-entry><b>{e(x['title'])}</b> <small>{e(x['date'])} {e(x['time'])} "
        f"{e(x['agent'])}</small><pre>{e(x['body'])}</pre></li>"
        for x in j["recent"]
    )
    searched = f"<p>{len(j['hits'])} hits for <q>{e(j['q'])}</q></p>" if j["q"] else ""
    return (
        "<h1>journal</h1>"
        '<form method=get action="/journal" id="journal-form">'
        f'<input id="journal-q" name="q" value="{e(j["q"])}" placeholder="search the journal">'
        '<button id="journal-search" type="submit">search</button></form>'
        f'{searched}<ol id="journal-hits">{hits}</ol>'
        f'<h2>recent entries</h2><ul id="journal-recent">{recent}</ul>'
        f'<h2>MEMORY.md</h2><pre id="memory">{e(j["memory"])}</pre>'
    )


# -- health -----------------------------------------------------------------------------


def clock(ts: Any) -> str:
    """An epoch time as the local date and time (an ISO string as it is)."""
    if isinstance(ts, (int, float)) and ts > 0:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return str(ts or "")


def health(h: dict[str, Any]) -> str:
    checks = []
    for c in h["checks"]:
        dots = "".join(
            f'<span class="{"ok" if r.get("ok") else "fail"}" data-ok="{bool(r.get("ok"))}" '
            f'title="{e(clock(r.get("ts")))} {e(r.get("detail"))}">'
            f"{'●' if r.get('ok') else '✗'}</span>"
            for r in c["results"][-40:]
        )
        checks.append(
            f'<div data-check="{e(c["name"])}"><b>{e(c["name"])}</b> '
            f"<small>{e(c['kind'])} {e(c['target'])}</small> <span class=timeline>{dots}</span>"
            f"</div>"
        )
    lg = h.get("last_good")
    last_good = f"{e(lg['sha'][:12])} {e(lg['subject'])}" if lg else "none yet"
    rescues = []
    for r in h["rescues"]:
        cmds = "".join(
            f"<li>{e(c['what'])}: <code data-rescue>{e(c['command'])}</code></li>"
            for c in r["commands"]
        )
        when = clock(r["ts"])
        rescues.append(
            f'<div data-rollback="{e(r["id"])}"><b>{e(r["id"])}</b> <small>{e(when)} '
            f"{'automatic' if r['auto'] else 'by hand'} · {e(r['status'])}</small>"
            f"<p>{e(r['reason'])}</p><ul>{cmds}</ul></div>"
        )
    queue = "".join(
        f'<tr data-merge="{e(q["n"])}"><td>#{e(q["n"])}</td><td>{e(q["branch"])}</td>'
        f"<td>{e(q['agent'])}</td><td>{e(q['state'])}</td><td>{e(q['reason'])}</td></tr>"
        for q in h["merge_queue"]
    )
    alert = f'<pre class="alert" id="alert">{e(h["alert"])}</pre>' if h.get("alert") else ""
    return (
        f"<h1>health</h1>{alert}"
        f"<p>phase {e(h['phase'])} · failures {e(h['consecutive_failures'])}/"
        f"{e(h['threshold'])}</p>"
        f'<section id="checks">{"".join(checks) or "<p>no health checks configured</p>"}'
        f'</section><h2>last good</h2><p id="last-good">{last_good}</p>'
        f'<h2>rollbacks and rescues</h2><section id="rollbacks">{"".join(rescues)}</section>'
        '<h2>merge queue</h2><table id="merge-queue"><thead><tr><th>#</th><th>branch</th>'
        f"<th>agent</th><th>state</th><th>why</th></tr></thead><tbody>{queue}</tbody></table>"
    )


# -- cost -------------------------------------------------------------------------------

COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1")


def chart(series: dict[str, list[tuple[float, int]]], w: int = 720, h: int = 240) -> str:
    """Tokens over time, a polyline per agent, as inline SVG."""
    pts = [p for s in series.values() for p in s]
    parts = [f'<svg id="cost-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}">']
    parts.append(f'<rect width="{w}" height="{h}" fill="none" stroke="#ccc"/>')
    if not pts:
        parts.append(f'<text x="10" y="{h // 2}">no token use recorded yet</text></svg>')
        return "".join(parts)
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    top = max(p[1] for p in pts) or 1
    span = (t1 - t0) or 1.0
    for i, (name, s) in enumerate(sorted(series.items())):
        if not s:
            continue
        coords = " ".join(
            f"{10 + (t - t0) / span * (w - 20):.1f},{h - 10 - v / top * (h - 30):.1f}" for t, v in s
        )
        color = COLORS[i % len(COLORS)]
        parts.append(
            f'<polyline data-series="{e(name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{coords}"><title>{e(name)}</title></polyline>'
        )
    parts.append(f'<text x="12" y="16">{e(short(top))} tokens</text></svg>')
    return "".join(parts)


def cost(c: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr data-cost-agent="{e(a["name"])}"><td>{e(a["name"])}</td><td>{e(a["profile"])}</td>'
        f"<td>{short(a['input'])}</td><td>{short(a['output'])}</td>"
        f"<td>{short(a['cache_creation'])}</td><td>{short(a['cache_read'])}</td>"
        f'<td data-field="total">{short(a["total"])}</td><td>{a["messages"]}</td></tr>'
        for a in c["agents"]
    )
    return (
        f"<h1>cost</h1>{chart(c['series'])}"
        '<table id="cost"><thead><tr><th>agent</th><th>program</th><th>input</th>'
        "<th>output</th><th>cache write</th><th>cache read</th><th>total</th><th>calls</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


# -- events -----------------------------------------------------------------------------


def event_text(ev: dict[str, Any]) -> str:
    rest = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("ts", "event", "agent"))
    return (
        f"{str(ev.get('ts', ''))[11:23]}  {ev.get('event', '')}  {ev.get('agent') or '-'}  {rest}"
    )


def event_row(ev: dict[str, Any]) -> str:
    return f'<tr data-event="{e(ev.get("event"))}"><td><code>{e(event_text(ev))}</code></td></tr>'


def events_page(evs: list[dict[str, Any]]) -> str:
    rows = "".join(event_row(x) for x in evs)
    return f'<h1>events</h1><table id="events"><tbody>{rows}</tbody></table>'


def as_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
