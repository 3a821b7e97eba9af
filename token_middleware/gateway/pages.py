"""HTML and JavaScript of the gateway's login page and its small demo page (``/app``).

Every value put into HTML goes through :func:`html.escape`. The pages carry no inline script:
``/app.js`` is served separately so the Content-Security-Policy can forbid inline code. Element
ids are stable for browser tests: ``#orders-result``, ``#chain-result``, ``#chain-orders-sub``,
``#chain-customers-sub`` (each gets ``data-status`` once its call has finished).
"""

from __future__ import annotations

from html import escape

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
label { display: block; margin: .6rem 0 .2rem; }
input { padding: .35rem; width: 18rem; }
button { margin-top: 1rem; padding: .4rem 1rem; }
pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; }
.error { color: #a00; }
dt { font-weight: bold; }
"""


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def login_page(csrf_token: str, *, error: str | None = None, username: str = "") -> str:
    """The login form; ``error`` is shown above it."""
    message = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    return _layout(
        "Sign in - gateway",
        f"""<h1>Sign in</h1>
{message}
<form method="post" action="/login" id="login-form">
  <input type="hidden" name="csrf_token" value="{escape(csrf_token)}">
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" required value="{escape(username)}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <label for="client_name">Client name (optional, becomes <code>client_id</code>)</label>
  <input id="client_name" name="client_name" placeholder="gateway" maxlength="64">
  <button type="submit" id="login-submit">Sign in</button>
</form>""",
    )


def app_page(username: str, client_id: str, csrf_token: str) -> str:
    """The page behind the login: calls the services and shows who they saw."""
    return _layout(
        "Access token demo",
        f"""<h1>Signed in as <span id="user">{escape(username)}</span></h1>
<p>client_id: <code id="client-id">{escape(client_id)}</code></p>
<form method="post" action="/logout" id="logout-form">
  <input type="hidden" name="csrf_token" value="{escape(csrf_token)}">
  <button type="submit" id="logout">Sign out</button>
</form>
<h2>GET /orders</h2>
<pre id="orders-result">loading…</pre>
<h2>GET /orders/chain</h2>
<dl>
  <dt>orders service saw</dt><dd id="chain-orders-sub">…</dd>
  <dt>customers service saw</dt><dd id="chain-customers-sub">…</dd>
</dl>
<pre id="chain-result">loading…</pre>
<script src="/app.js"></script>""",
    )


APP_JS = """\
"use strict";
async function call(path) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: { "Accept": "application/json" },
  });
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch (e) { data = null; }
  return { status: response.status, data: data, text: text };
}
function show(id, status, value) {
  const el = document.getElementById(id);
  el.textContent = value;
  el.dataset.status = String(status);
}
function describe(whoami) {
  if (!whoami || typeof whoami !== "object") { return "?"; }
  return String(whoami.sub);
}
(async function () {
  try {
    const orders = await call("/orders");
    show("orders-result", orders.status,
         orders.status + "\\n" + (orders.data ? JSON.stringify(orders.data, null, 2) : orders.text));
  } catch (e) { show("orders-result", "error", String(e)); }
  try {
    const chain = await call("/orders/chain");
    const data = chain.data || {};
    show("chain-orders-sub", chain.status, describe(data.orders));
    show("chain-customers-sub", chain.status, describe(data.customers));
    show("chain-result", chain.status,
         chain.status + "\\n" + (chain.data ? JSON.stringify(chain.data, null, 2) : chain.text));
  } catch (e) { show("chain-result", "error", String(e)); }
})();
"""


def message_page(title: str, message: str) -> str:
    """A plain page for refusals in the browser flow (CSRF failure, too many attempts)."""
    return _layout(
        title,
        f'<h1>{escape(title)}</h1>\n<p class="error">{escape(message)}</p>\n'
        '<p><a href="/login">Back to sign in</a></p>',
    )
