"""The dashboard's page, sign-in form, style and script: all served by the daemon, no CDN."""

from __future__ import annotations

import html

__all__ = ["ICON", "SCRIPT", "STYLE", "page", "signin_page"]

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#1d2330"/>'
    '<circle cx="11" cy="16" r="6" fill="#7ea6ff"/><circle cx="21" cy="16" r="6" fill="#52c48a"/>'
    "</svg>"
)

STYLE = """
:root { --bg:#f6f7f9; --fg:#1d2330; --dim:#6b7280; --line:#e2e5ea; --card:#fff;
  --ok:#0f7b3f; --okbg:#dcf5e5; --warn:#8a5a00; --warnbg:#fdf1d6; --bad:#a21b1b;
  --badbg:#fbe0e0; --idle:#4b5563; --idlebg:#eceef1; --accent:#3451b2; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:var(--bg); color:var(--fg); }
header { display:flex; align-items:center; gap:16px; padding:12px 24px;
  background:#1d2330; color:#fff; }
header h1 { font-size:17px; margin:0; letter-spacing:.02em; }
header #summary { color:#c8cdd6; flex:1; }
header form button { background:transparent; color:#c8cdd6; border:1px solid #4b5563; }
main { display:grid; grid-template-columns: minmax(0,3fr) minmax(260px,1fr); gap:16px;
  padding:16px 24px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:12px 16px; min-width:0; }
section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em;
  color:var(--dim); margin:0 0 8px; }
#servers-card, #calls-card { grid-column:1; }
#tree-card { grid-column:2; grid-row:1 / span 2; }
#stderr-card { grid-column:1 / span 2; }
table { border-collapse:collapse; width:100%; }
th { text-align:left; font-weight:600; color:var(--dim); font-size:12px;
  border-bottom:1px solid var(--line); padding:6px 8px; white-space:nowrap; }
td { border-bottom:1px solid var(--line); padding:6px 8px; white-space:nowrap; }
td.error { white-space:normal; color:var(--bad); font-size:12px; max-width:280px; }
td.num { text-align:right; font-variant-numeric: tabular-nums; }
td.ok { color:var(--ok); } td.bad { color:var(--bad); }
td.name a { color:var(--accent); font-weight:600; text-decoration:none; }
span.state { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px;
  font-weight:600; background:var(--idlebg); color:var(--idle); }
span.state.ready, span.state.running { background:var(--okbg); color:var(--ok); }
span.state.starting, span.state.backoff, span.state.restarting, span.state.stopping {
  background:var(--warnbg); color:var(--warn); }
span.state.failed, span.state.needs-login { background:var(--badbg); color:var(--bad); }
button { font:inherit; font-size:12px; padding:2px 10px; margin-right:4px; border-radius:5px;
  border:1px solid var(--line); background:#fff; cursor:pointer; }
button:hover:enabled { border-color:var(--accent); color:var(--accent); }
button:disabled { color:#b6bcc6; cursor:default; }
ul.tree, ul.tree ul { list-style:none; margin:0; padding-left:14px; }
ul.tree { padding-left:0; }
ul.tree li { margin:3px 0; white-space:nowrap; }
ul.tree ul { border-left:1px dashed var(--line); margin-left:6px; }
.dim { color:var(--dim); font-size:12px; }
.empty { color:var(--dim); }
pre { background:#111827; color:#e5e7eb; padding:10px; border-radius:6px; overflow:auto;
  max-height:320px; font-size:12px; }
#notice { color:var(--bad); padding:0 24px; }
.signin { max-width:420px; margin:12vh auto; background:#fff; padding:24px;
  border:1px solid var(--line); border-radius:8px; }
.signin input { width:100%; padding:8px; font:inherit; margin:8px 0 12px; }
"""

SCRIPT = """
(function () {
  var csrf = document.querySelector('meta[name="csrf"]').content;
  var notice = document.getElementById('notice');
  function put(parts) {
    for (var key in parts) {
      var el = document.getElementById(key);
      if (el) el.innerHTML = parts[key];
    }
  }
  var events = new EventSource('/dashboard/events');
  events.addEventListener('update', function (e) {
    notice.textContent = '';
    put(JSON.parse(e.data));
  });
  events.addEventListener('signin', function () { location.href = '/dashboard/signin'; });
  events.onerror = function () { notice.textContent = 'reconnecting to the daemon…'; };
  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (!form.classList.contains('action')) return;
    e.preventDefault();
    var body = new URLSearchParams(new FormData(form, e.submitter));
    fetch(form.getAttribute('action'), {method: 'POST', body: body, credentials: 'same-origin',
                        headers: {'X-CSRF-Token': csrf}})
      .then(function (r) { return r.json(); })
      .then(function (r) { notice.textContent = r.ok ? '' : r.error; })
      .catch(function (err) { notice.textContent = String(err); });
  });
  document.addEventListener('click', function (e) {
    var link = e.target.closest('a.stderr');
    if (!link) return;
    e.preventDefault();
    fetch('/dashboard/stderr?server=' + encodeURIComponent(link.dataset.server),
          {credentials: 'same-origin'})
      .then(function (r) { return r.text(); })
      .then(function (text) {
        document.getElementById('stderr-card').hidden = false;
        document.getElementById('stderr').innerHTML = text;
      });
  });
})();
"""


def page(csrf: str, parts: dict[str, str]) -> str:
    """The dashboard, with its live parts already rendered (the script keeps them live)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{html.escape(csrf)}">
<title>bicameral</title><link rel="stylesheet" href="/dashboard/style.css">
<link rel="icon" href="/dashboard/icon.svg" type="image/svg+xml"></head>
<body><header><h1>bicameral</h1><span id="summary">{parts["summary"]}</span>
<form method="post" action="/dashboard/signout"><input type="hidden" name="csrf"
 value="{html.escape(csrf)}"><button type="submit">sign out</button></form></header>
<p id="notice"></p>
<main>
<section id="servers-card"><h2>Servers</h2><div id="servers">{parts["servers"]}</div></section>
<section id="tree-card"><h2>Supervisor tree</h2><div id="tree">{parts["tree"]}</div></section>
<section id="calls-card"><h2>Recent calls</h2><div id="calls">{parts["calls"]}</div></section>
<section id="stderr-card" hidden><div id="stderr"></div></section>
</main>
<script src="/dashboard/app.js"></script></body></html>
"""


def signin_page(error: str = "") -> str:
    """The sign-in form: the listener's token, once."""
    message = f'<p style="color:#a21b1b">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bicameral: sign in</title>
<link rel="stylesheet" href="/dashboard/style.css">
<link rel="icon" href="/dashboard/icon.svg" type="image/svg+xml"></head>
<body><form class="signin" method="post" action="/dashboard/signin">
<h1>bicameral</h1>{message}
<label for="token">The listener's token (<code>bicameral mcp http</code> prints it;
<code>bicameral dashboard</code> signs you in without it)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit">Sign in</button></form></body></html>
"""
