"""The web dashboard (issue 15): the whole team at a glance, live, in a browser.

``app.create_app(cfg, token)`` is the Starlette app; ``server.serve`` runs it
with uvicorn and publishes where (state/dashboard.json); ``views`` are the
read models over the same core functions the CLI uses, ``pages`` the HTML,
``live`` the watcher thread behind the Server-Sent Events stream, and
static/ the one script and style sheet. A front end (layer 9): it reads and
acts only through the core, and never writes the data root but through it.

The routes, DOM hooks and token rules are those of the dashboard contract
(docs/DASHBOARD.md). Additions beyond it (no deviations):

- an ``agent`` event's data is the status row plus ``cells`` (the text of
  each field, as the page shows it, ``preview`` included) and ``alert``;
- every action also records an ``action`` event (by human, via dashboard);
- a mail row carries ``data-kind``, ``data-from`` and ``data-to``; the
  merge queue's rows ``data-merge="N"``; the header ``#live`` shows whether
  the stream is connected;
- the dashboard refuses to kill the supervisor (409): `cmux kill supervisor --force`.
"""
