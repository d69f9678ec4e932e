// cmux dashboard: the live stream patches the page in place; actions POST
// with the X-Cmux-Token header (a cookie alone is refused for actions).
(function () {
  "use strict";
  var token = (document.querySelector('meta[name="cmux-token"]') || {}).content || "";
  var page = document.body.getAttribute("data-page");
  var FIELDS = ["role", "program", "host", "state", "task", "age", "tokens", "unread", "held", "queue"];
  var KEEP = 200; // rows kept in the mail and event tables

  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function toast(msg, bad) {
    var t = document.getElementById("toast");
    if (!t) return;
    t.textContent = msg;
    t.className = "show" + (bad ? " error" : "");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { t.className = ""; }, 4000);
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "X-Cmux-Token": token, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error((j.error || r.status) + (j.hint ? " — " + j.hint : ""));
        return j;
      });
    });
  }
  function cap(tbody) { while (tbody.rows.length > KEEP) tbody.deleteRow(tbody.rows.length - 1); }
  function esc(s) { return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/"/g, '\\"'); }

  // -- agents -------------------------------------------------------------------------
  function agentRow(a) {
    var tbody = document.querySelector("#team tbody");
    if (!tbody) { // an agent's page: its state, and its screen read again
      if (!document.querySelector('[data-action][data-agent="' + esc(a.name) + '"]')) return;
      var st = document.querySelector('h1 [data-field="state"]');
      if (st) st.textContent = a.state;
      fetch("/api/agent/" + encodeURIComponent(a.name) + "/screen", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) { var s = document.getElementById("screen"); if (j && s) s.textContent = j.screen; });
      return;
    }
    var tr = tbody.querySelector('tr[data-agent="' + esc(a.name) + '"]');
    if (!tr) {
      tr = el("tr", { "data-agent": a.name });
      var td = el("td", { class: "name" });
      td.appendChild(el("a", { href: "/agent/" + encodeURIComponent(a.name) }, a.name));
      tr.appendChild(td);
      FIELDS.forEach(function (f) { tr.appendChild(el("td", { "data-field": f })); });
      var p = el("td");
      p.appendChild(el("pre", { "data-field": "preview" }));
      tr.appendChild(p);
      tbody.appendChild(tr);
      var empty = document.querySelector(".empty");
      if (empty) empty.remove();
    }
    var c = a.cells || {};
    Object.keys(c).forEach(function (f) {
      var cell = tr.querySelector('[data-field="' + f + '"]');
      if (cell && cell.textContent !== c[f]) cell.textContent = c[f];
    });
    tr.setAttribute("data-state", a.state);
    tr.classList.toggle("alert", !!a.alert);
  }

  // -- events and mail ----------------------------------------------------------------
  function eventText(ev) {
    var rest = Object.keys(ev).filter(function (k) { return ["ts", "event", "agent"].indexOf(k) < 0; })
      .map(function (k) { var v = ev[k]; return k + "=" + (typeof v === "object" ? JSON.stringify(v) : v); });
    return String(ev.ts || "").slice(11, 23) + "  " + (ev.event || "") + "  " + (ev.agent || "-") + "  " + rest.join(" ");
  }
  function eventRow(ev) {
    var tbody = document.querySelector("#events tbody");
    if (!tbody) return;
    var tr = el("tr", { "data-event": ev.event || "" });
    var td = el("td");
    td.appendChild(el("code", {}, eventText(ev)));
    tr.appendChild(td);
    tbody.insertBefore(tr, tbody.firstChild);
    cap(tbody);
  }
  function trailText(t) {
    var out = [];
    ["sent", "delivered", "read"].forEach(function (k) { if (t && t[k]) out.push(k + " " + String(t[k]).slice(11, 19)); });
    return out.join(" · ") || "sent";
  }
  function mailRow(m) {
    var tbody = document.querySelector("#mail tbody");
    if (!tbody) return;
    var fa = document.getElementById("mail-agent"), fk = document.getElementById("mail-kind");
    if (fa && fa.value && fa.value !== m.from && fa.value !== m.to) return;
    if (fk && fk.value && fk.value !== m.kind) return;
    var tr = tbody.querySelector('tr[data-mail-id="' + esc(m.id) + '"]');
    if (tr) { tr.querySelector('[data-field="trail"]').textContent = trailText(m.trail); return; }
    tr = el("tr", { "data-mail-id": m.id, "data-kind": m.kind, "data-from": m.from, "data-to": m.to, class: "fresh" });
    tr.appendChild(el("td", { class: "ts" }, String(m.ts || "").slice(11, 19)));
    tr.appendChild(el("td", { "data-field": "from" }, m.from));
    tr.appendChild(el("td", { "data-field": "to" }, m.to));
    tr.appendChild(el("td", { "data-field": "kind" }, m.kind));
    var b = el("td");
    b.appendChild(el("pre", { "data-field": "body" }, m.body));
    tr.appendChild(b);
    tr.appendChild(el("td", { "data-field": "trail" }, trailText(m.trail)));
    tbody.insertBefore(tr, tbody.firstChild);
    cap(tbody);
  }

  // -- the stream ---------------------------------------------------------------------
  function connect() {
    if (!window.EventSource) return;
    var es = new EventSource("/api/stream?token=" + encodeURIComponent(token));
    var live = document.getElementById("live");
    es.onopen = function () { if (live) { live.textContent = "●"; live.className = "on"; } };
    es.onerror = function () { if (live) { live.textContent = "○"; live.className = ""; } };
    es.addEventListener("agent", function (m) { agentRow(JSON.parse(m.data)); });
    es.addEventListener("event", function (m) { eventRow(JSON.parse(m.data)); });
    es.addEventListener("mail", function (m) { mailRow(JSON.parse(m.data)); });
    window.cmuxStream = es;
  }

  // -- actions ------------------------------------------------------------------------
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    var btn = t.closest && t.closest("button[data-action]");
    if (btn) {
      var name = btn.getAttribute("data-agent"), act = btn.getAttribute("data-action");
      btn.disabled = true;
      post("/api/" + act + "/" + encodeURIComponent(name))
        .then(function (j) { toast(act + " " + name + ": ok" + (j.state ? " (now " + j.state + ")" : "")); })
        .catch(function (e) { toast(e.message, true); })
        .then(function () { btn.disabled = false; });
      return;
    }
    if (t.id === "send-submit") {
      var to = document.getElementById("send-to").value, body = document.getElementById("send-body");
      if (!to || !body.value.trim()) { toast("choose a recipient and write a message", true); return; }
      t.disabled = true;
      post("/api/send", { to: to, body: body.value })
        .then(function (j) { toast("sent " + j.id + " to " + j.to); body.value = ""; })
        .catch(function (e) { toast(e.message, true); })
        .then(function () { t.disabled = false; });
      return;
    }
    var row = t.closest && t.closest("tr[data-agent]");
    if (row && !t.closest("a")) window.location.href = "/agent/" + encodeURIComponent(row.getAttribute("data-agent"));
  });

  if (["team", "mail", "events"].indexOf(page) >= 0 || document.querySelector("[data-action]")) connect();
})();
