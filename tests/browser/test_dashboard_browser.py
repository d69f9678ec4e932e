"""The dashboard as a person uses it: a real headless Chromium on the pages of
`cmux dashboard`, over a real cmux session (real tmux, real agents, the real
router and monitor). Each test checks what a person would look for on the
page, against what the CLI says (`cmux status --json`, the panes, the event
log). See tests/browser/conftest.py for the session they share."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.browser.conftest import Team, shot
from tests.helpers import Project, git, record, wait_until

# One session for the module: under xdist (--dist loadgroup) on one worker.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(60), pytest.mark.xdist_group("browser")]

LIVE = 1.0  # seconds from a change to the page showing it, without a reload
STATES_JS = """els => Object.fromEntries(els.map(e => [e.dataset.agent, {
    state: e.dataset.state,
    alert: e.classList.contains('alert'),
    fields: Object.fromEntries([...e.querySelectorAll('[data-field]')].map(
        f => [f.dataset.field, f.textContent.trim()])),
}]))"""


def goto(page: Any, team: Team, path: str) -> Any:
    """Open ``path`` as a person's first click does: the URL with its token."""
    response = page.goto(team.dash.at(path))
    assert response is not None and response.status == 200, (
        f"GET {path}: {response.status if response else 'no response'}"
    )
    return response


def rows(page: Any) -> dict[str, dict[str, Any]]:
    """The team page's agent rows: name -> state, alert class, fields."""
    found: dict[str, dict[str, Any]] = page.eval_on_selector_all(
        "[data-agent][data-state]", STATES_JS
    )
    return found


def events_since(project: Project, n: int) -> list[dict[str, Any]]:
    return project.events()[n:]


def state(project: Project, name: str) -> str:
    """``name``'s state as the registry has it (what `cmux status` reads),
    without a CLI call per poll."""
    return str(record(project, name)["state"])


def by_human(event: dict[str, Any]) -> bool:
    return "human" in (event.get("by"), event.get("sender"))


@dataclass
class Latency:
    from_call: float  # from the moment the CLI was started
    from_return: float  # from the moment it returned: the change is on disk by then


def timed(page: Any, condition: str, arg: Any, action: Callable[[], Any]) -> Latency:
    """Run ``action`` (a CLI call) in a thread and time how long the open page
    takes to satisfy the JavaScript ``condition`` (polled every 20 ms)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = action()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc
        box["t"] = time.monotonic()

    t0 = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    page.wait_for_function(condition, arg=arg, timeout=15_000, polling=20)
    shown = time.monotonic()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return Latency(shown - t0, shown - box["t"])


def wait_live(page: Any) -> None:
    """Until the page's stream is connected (the header's dot, #live, is on)."""
    page.wait_for_function(
        "() => { const l = document.getElementById('live'); return !l || l.className === 'on'; }",
        timeout=5_000,
    )


def mark_page(page: Any) -> None:
    """A flag that a reload would lose: proves a change came in place."""
    page.evaluate("window.__cmux_no_reload = true")


def not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.__cmux_no_reload === true"))


def test_the_team_page_shows_every_agent_in_the_state_cmux_status_reports(
    team: Team, page: Any
) -> None:
    before = {a["name"]: a for a in team.project.ok("status", "--json").json()}
    goto(page, team, "/")  # the root is the team page
    shown = rows(page)
    after = {a["name"]: a for a in team.project.ok("status", "--json").json()}
    assert set(shown) == set(after), "every agent, and only the agents, have a row"
    assert {"supervisor", "demo-1", "sh1", "cat1"} <= set(shown)
    for name, row in shown.items():
        want = after[name]
        if before.get(name, {}).get("state") == want["state"]:  # not moving just now
            assert row["state"] == want["state"], name
            assert row["fields"]["state"] == want["state"], name
        assert row["fields"]["role"] == want["role"], name
        assert want["profile"] in row["fields"]["program"], name
        assert want["task"][:12] in row["fields"]["task"], name
        for field in ("age", "tokens", "unread", "held", "queue", "preview"):
            assert field in row["fields"], f"{name} has no {field} field"
    # The preview is the pane's last lines.
    last = [ln for ln in team.pane("demo-1").splitlines() if ln.strip()][-1].strip()
    assert last in shown["demo-1"]["fields"]["preview"]
    shot(page, "team")

    # A click on a row opens the agent: its screen, context file and history.
    page.click('[data-agent="demo-1"][data-state]')
    page.wait_for_url("**/agent/demo-1**")
    assert last in page.inner_text("#screen")
    assert "count the words" in page.inner_text("#context")  # its task, in its context
    assert "done" in page.inner_text("#history")
    for verb in ("approve", "deny", "kill"):
        assert page.locator(f'button[data-action="{verb}"][data-agent="demo-1"]').count() == 1
    shot(page, "agent")


def test_a_spawn_a_state_change_and_a_message_show_on_open_pages_within_a_second(
    team: Team, page: Any
) -> None:
    p = team.project
    goto(page, team, "/team")
    mail = page.context.new_page()
    goto(mail, team, "/mail")
    stream = page.context.new_page()
    goto(stream, team, "/events")
    for pg in (page, mail, stream):
        wait_live(pg)
        mark_page(pg)

    spawn = timed(
        page,
        'n => document.querySelector(`[data-agent="${n}"][data-state]`) !== null',
        "live1",
        lambda: p.ok("spawn", "live1", "--command", "cat", "--task", "appear live"),
    )
    # The spawn is in the event stream too (already, or within the second).
    stream.wait_for_function(
        "() => [...document.querySelectorAll('#events [data-event]')]"
        ".some(e => e.textContent.includes('live1'))",
        timeout=LIVE * 1000,
    )

    changed = timed(
        page,
        """n => { const r = document.querySelector(`[data-agent="${n}"][data-state]`);
            return r && r.dataset.state === 'blocked'
                && r.querySelector('[data-field="state"]').textContent.includes('blocked'); }""",
        "live1",
        lambda: p.tool("mailbox", "blocked", "I need a hand", agent="live1"),
    )
    assert state(p, "live1") == "blocked"

    body = f"hello live {secrets.token_hex(4)}"
    message = timed(
        mail,
        """b => [...document.querySelectorAll('[data-mail-id] [data-field="body"]')]
                  .some(e => e.textContent.includes(b))""",
        body,
        lambda: p.ok("send", "live1", body),
    )
    newest = mail.locator("[data-mail-id]").first
    assert body in newest.inner_text(), "newest first"

    for pg in (page, mail, stream):
        assert not_reloaded(pg), "the page was reloaded"
    report = {
        "spawn": spawn,
        "state change": changed,
        "message": message,
    }
    print(
        "live latency (s, from the CLI call / from its return): "
        + ", ".join(f"{k} {v.from_call:.3f}/{v.from_return:.3f}" for k, v in report.items())
    )
    for what, lat in report.items():
        assert lat.from_return <= LIVE, f"{what} took {lat.from_return:.2f}s to show"


def test_a_message_sent_from_the_mail_page_reaches_the_agents_pane(team: Team, page: Any) -> None:
    p = team.project
    seen = len(p.events())
    goto(page, team, "/mail")
    body = f"from the page {secrets.token_hex(4)}"
    tag = page.eval_on_selector("#send-to", "e => e.tagName")
    if tag == "SELECT":
        page.select_option("#send-to", "cat1")
    else:
        page.fill("#send-to", "cat1")
    page.fill("textarea#send-body", body)
    page.click("button#send-submit")

    wait_until(lambda: body in team.pane("cat1"), timeout=10, what="the message in cat1's pane")
    sent = [e for e in events_since(p, seen) if e["event"] == "send" and e.get("agent") == "cat1"]
    assert sent and by_human(sent[0]), sent
    # And the page shows it in the flow, without a reload, with its trail.
    page.wait_for_function(
        """b => [...document.querySelectorAll('[data-mail-id]')].some(r =>
                  r.querySelector('[data-field="body"]').textContent.includes(b)
                  && r.querySelector('[data-field="trail"]').textContent.includes('delivered'))""",
        arg=body,
        timeout=5_000,
    )

    # A bad entry in a mailbox goes to deadletter; the page says why.
    from cmux.mail.message import new_id

    bad = f"{new_id()}.json"
    (p.data / "mailbox" / "cat1" / "new" / bad).write_text("this is not a message")
    wait_until(
        lambda: (p.data / "mailbox" / "deadletter" / bad).exists(), what="the bad entry dead"
    )
    goto(page, team, "/mail")
    dead = page.locator("[data-deadletter]").filter(has_text=bad[:12])
    assert dead.count() == 1, page.locator("[data-deadletter]").all_inner_texts()
    assert dead.locator('[data-field="reason"]').inner_text().strip()
    shot(page, "mail")

    # The filters: one kind, one agent.
    page.select_option("select#mail-kind", "message")
    page.wait_for_function(
        """() => { const rows = [...document.querySelectorAll('[data-mail-id]')]
                     .filter(r => r.offsetParent !== null);
                   return rows.length > 0 && rows.every(r =>
                     r.querySelector('[data-field="kind"]').textContent.trim() === 'message'); }"""
    )
    page.select_option("select#mail-kind", "")
    page.select_option("select#mail-agent", "cat1")
    page.wait_for_function(
        """() => { const rows = [...document.querySelectorAll('[data-mail-id]')]
                     .filter(r => r.offsetParent !== null);
                   return rows.length > 0 && rows.every(r => ['from', 'to'].some(f =>
                     r.querySelector(`[data-field="${f}"]`).textContent.trim() === 'cat1')); }"""
    )


def test_approving_and_denying_from_the_agent_page_answer_a_waiting_agent(
    team: Team, page: Any
) -> None:
    p = team.project
    for name in ("asker", "asker2"):  # tests/browser/asker.py (conftest's profile)
        p.ok("spawn", name, "--agent", "asker", "--task", "ask before touching")
    wait_until(
        lambda: all(state(p, n) == "waiting" for n in ("asker", "asker2")),
        timeout=15,
        what="both askers waiting on their permission dialogs",
    )
    seen = len(p.events())
    goto(page, team, "/team")
    row = rows(page)["asker"]
    assert row["state"] == "waiting" and row["alert"], "a waiting agent stands out"

    page.click('[data-agent="asker"][data-state]')
    page.wait_for_url("**/agent/asker**")
    page.click('button[data-action="approve"][data-agent="asker"]')
    wait_until(lambda: "APPROVED" in team.pane("asker"), timeout=10, what="the yes in the pane")
    wait_until(lambda: state(p, "asker") == "busy", timeout=5, what="asker busy")

    goto(page, team, "/agent/asker2")
    page.click('button[data-action="deny"][data-agent="asker2"]')
    wait_until(lambda: "DENIED" in team.pane("asker2"), timeout=10, what="the no in the pane")
    assert "APPROVED" not in team.pane("asker2")
    wait_until(lambda: state(p, "asker2") == "idle", timeout=5, what="asker2 idle")

    def answered(verb: str, name: str) -> bool:  # recorded a moment after the state moved
        return any(
            e["event"] == verb and e.get("agent") == name and by_human(e)
            for e in events_since(p, seen)
        )

    wait_until(lambda: answered("approve", "asker"), timeout=5, what="the approve, by human")
    wait_until(lambda: answered("deny", "asker2"), timeout=5, what="the deny, by human")


def test_killing_a_worker_from_its_page(team: Team, page: Any) -> None:
    p = team.project
    p.ok("spawn", "victim", "--command", "cat", "--task", "be killed")
    seen = len(p.events())
    page.on("dialog", lambda d: d.accept())  # an "are you sure?" is answered yes
    goto(page, team, "/agent/victim")
    page.click('button[data-action="kill"][data-agent="victim"]')
    wait_until(lambda: state(p, "victim") == "killed", timeout=10, what="victim killed")
    windows = p.tmux("list-windows", "-a", "-F", "#{window_name}").split()
    assert "victim" not in windows
    # (recorded once the kill returned: a moment after the state moved)
    wait_until(
        lambda: any(e.get("agent") == "victim" and by_human(e) for e in events_since(p, seen)),
        timeout=5,
        what="the kill in the event log as done by human",
    )


def test_journal_search_returns_the_entry_best_first(team: Team, page: Any) -> None:
    p = team.project
    word = "zebra" + secrets.token_hex(3)
    p.ok("journal", "add", f"{word} notes", "--body", f"{word} {word}: all about the {word}")
    p.ok("journal", "add", "a long unrelated entry", "--body", "padding " * 40 + word)
    goto(page, team, "/journal")
    page.fill("input#journal-q", word)
    page.click("button#journal-search")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-journal-hit]').length >= 2", timeout=5_000
    )
    hits = page.locator("[data-journal-hit]")
    texts = [hits.nth(i).inner_text() for i in range(hits.count())]
    cli = p.ok("journal", "search", word, "--json").json()
    assert len(texts) == len(cli) == 2
    assert f"{word} notes" in texts[0], "the best hit first, as `cmux journal search` ranks it"
    assert cli[0]["title"] == f"{word} notes"
    assert all(word in t for t in texts), "each hit shows its snippet"
    recent = page.locator("[data-journal-entry]").all_inner_texts()
    assert any(f"{word} notes" in t for t in recent)
    assert page.locator("#memory").count() == 1
    shot(page, "journal")


def test_a_rollback_shows_on_the_health_page_with_its_rescue_commands(
    team: Team, page: Any
) -> None:
    p = team.project
    p.ok("health", "--now")
    good = git(p.root, "rev-parse", "HEAD").strip()
    (p.root / "BROKEN").write_text("a bad change\n")
    git(p.root, "add", "BROKEN")
    git(p.root, "commit", "-q", "-m", "a bad change")
    (p.root / "wip.txt").write_text("unfinished\n")  # untracked: saved in a stash
    out = p.ok("rollback", "-y", "--json").json()
    assert out["rolled_back"] and out["target"] == good

    goto(page, team, "/health")
    assert page.locator('[data-check="code"]').count() == 1
    assert good[:7] in page.inner_text("#last-good")
    assert page.locator("#merge-queue").count() == 1
    rollback = page.locator("[data-rollback]").filter(has_text=out["branch"])
    assert rollback.count() >= 1, page.locator("[data-rollback]").all_inner_texts()
    rescue = " \n".join(rollback.first.locator("code[data-rescue]").all_inner_texts())
    assert out["branch"] in rescue, rescue
    assert out["stash"] and "git stash apply" in rescue, rescue
    shot(page, "health")

    # The commands shown bring the work back.
    commands = rollback.first.locator("code[data-rescue]").all_inner_texts()
    restore = next(c for c in commands if "git stash apply" in c)
    subprocess.run(["bash", "-c", restore], cwd=p.root, env=p.env, check=True, capture_output=True)
    assert (p.root / "wip.txt").read_text() == "unfinished\n"
    assert (p.root / "BROKEN").exists()
    git(p.root, "reset", "-q", "--hard")  # back on main as it was, for the tests after
    git(p.root, "switch", "-q", "main")
    (p.root / "wip.txt").unlink()


def test_without_the_token_every_request_is_refused(team: Team, page: Any) -> None:
    dash = team.dash
    for path in ("/", "/team", "/mail", "/agent/cat1", "/api/status", "/api/stream", "/api/mail"):
        r = page.request.get(dash.base + path)
        assert r.status == 403, f"GET {path} without the token: {r.status}"
        r = page.request.get(dash.base + path + "?token=" + "x" * len(dash.token))
        assert r.status == 403, f"GET {path} with a wrong token: {r.status}"
    response = page.goto(dash.base + "/team")
    assert response is not None and response.status == 403
    r = page.request.post(dash.base + "/api/send", data={"to": "cat1", "body": "no token"})
    assert r.status == 403

    # The token in the URL once: a cookie carries it on (HttpOnly, SameSite=Strict) ...
    goto(page, team, "/team")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "cmux_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click('a[data-nav="mail"]')
    page.wait_for_url("**/mail**")
    assert page.locator("#send-body").count() == 1
    # ... but a POST needs the header: the cookie alone is not enough (no CSRF).
    post = """([h, token]) => fetch('/api/send', {method: 'POST',
        headers: Object.assign({'Content-Type': 'application/json'},
                               h ? {'X-Cmux-Token': token} : {}),
        body: JSON.stringify({to: 'cat1', body: h ? 'with the header' : 'cookie only'})})
        .then(r => r.status)"""
    assert page.evaluate(post, [False, dash.token]) == 403
    assert page.evaluate(post, [True, dash.token]) == 200
    wait_until(lambda: "with the header" in team.pane("cat1"), what="the header's message")
    assert "cookie only" not in team.pane("cat1")

    # The JSON is what the CLI says.
    api = page.request.get(dash.base + "/api/status", headers={"X-Cmux-Token": dash.token})
    assert api.status == 200
    cli = team.project.ok("status", "--json").json()
    assert [a["name"] for a in api.json()] == [a["name"] for a in cli]
    assert set(api.json()[0]) == set(cli[0])


def test_no_view_reads_a_file_outside_the_data_root(team: Team, page: Any) -> None:
    p, dash = team.project, team.dash
    secret = f"SECRET-{secrets.token_hex(6)}"
    outside = team.helper_dir / "outside.md"
    outside.write_text(f"# {secret}\n{secret}\n")
    planted = [
        p.data / "contexts" / "ghost.md",
        p.data / "journal" / "2000-01-01-ghost.md",
    ]
    token = {"X-Cmux-Token": dash.token}
    try:
        for link in planted:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(outside)
        names = ["ghost", "..", "%2e%2e", "..%2F..%2F..%2Fetc%2Fpasswd", "a" * 200, "cat1%00"]
        for name in names:
            for view in ("screen", "context"):
                r = page.request.get(f"{dash.base}/api/agent/{name}/{view}", headers=token)
                assert r.status in (400, 404), f"/api/agent/{name}/{view}: {r.status}"
                assert secret not in r.text() and "root:x:0" not in r.text()
            r = page.request.get(f"{dash.base}/agent/{name}", headers=token)
            assert secret not in r.text() and "root:x:0" not in r.text()
        # (A query is echoed back: search for a word of the secret, look for all of it.)
        for path in ("/journal", "/journal?q=secret", "/api/journal?q=secret", "/api/journal"):
            r = page.request.get(dash.base + path, headers=token)
            assert r.status in (200, 400), f"{path}: {r.status}"
            assert secret not in r.text(), f"{path} showed a file outside the data root"
    finally:
        for link in planted:
            link.unlink(missing_ok=True)


def test_every_page_opens_from_the_nav(team: Team, page: Any) -> None:
    """Last in the file, so that in a whole run the earlier tests gave every
    page something to show for its screenshot; what it checks the session's
    start alone gives (demo-1's report, its journal entry, the spawns)."""
    goto(page, team, "/team")
    landmarks = {
        "team": "[data-agent][data-state]",
        "mail": "[data-mail-id]",
        "journal": "[data-journal-entry]",
        "health": "#last-good",
        "cost": "svg#cost-chart",
        "events": "#events [data-event]",
    }
    for name, landmark in landmarks.items():
        assert page.locator("nav a[data-nav]").count() == len(landmarks)
        page.click(f'nav a[data-nav="{name}"]')
        page.wait_for_url(f"**/{name}**" if name != "team" else "**/team**")
        assert page.locator(landmark).count() >= 1, f"/{name} shows no {landmark}"
        if name in ("cost", "events"):
            shot(page, name)
    cost = page.request.get(team.dash.base + "/api/cost", headers={"X-Cmux-Token": team.dash.token})
    assert cost.status == 200
    json.dumps(cost.json())  # plain JSON
