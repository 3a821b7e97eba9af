"""HTML and JavaScript of the gateway's login page and its small demo page (``/app``).

Every value put into HTML goes through :func:`html.escape`. The pages carry no inline script:
``/app.js`` is served separately so the Content-Security-Policy can forbid inline code. Element
ids are stable for browser tests: ``#orders-result``, ``#chain-result``, ``#chain-orders-sub``,
``#chain-customers-sub`` (each gets ``data-status`` once its call has finished), and the chain
picture: one box per hop, ``#hop-gateway``, ``#hop-orders``, ``#hop-customers``, each hop's token
fields in ``[data-field=sub|aud|scopes|act|left]``. The boxes are filled with ``textContent``
only (no HTML from the services' answers).
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
.chain { display: flex; align-items: stretch; gap: .4rem; flex-wrap: wrap; margin: 1rem 0; }
.hop { border: 2px solid #2a6; border-radius: .5rem; padding: .6rem .8rem; min-width: 11rem; flex: 1; }
.hop h3 { margin: 0 0 .4rem; font-size: 1rem; }
.hop dl { margin: 0; font-size: .9rem; }
.hop dd { margin: 0 0 .3rem; font-family: monospace; }
.hop.failed { border-color: #a00; }
.arrow { align-self: center; font-size: 1.6rem; color: #2a6; }
details { margin: .6rem 0; }
"""


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def login_page(csrf_token: str, *, error: str | None = None, username: str = "", note: str = "") -> str:
    """The login form; ``error`` is shown above it, and the operator's ``note`` (escaped) above that."""
    message = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    if note:
        message = f'<p class="note" id="login-note">{escape(note)}</p>\n' + message
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
<h2>The chain: GET /orders/chain</h2>
<p>Each box is one hop and the token it received: the identity travels, each token narrows.</p>
<div class="chain" id="chain">
  <section class="hop" id="hop-gateway"><h3>gateway</h3><dl>
    <dt>received</dt><dd>your sign-in (session cookie)</dd>
    <dt>sub</dt><dd data-field="sub">{escape(username)}</dd>
    <dt>client_id</dt><dd>{escape(client_id)}</dd></dl></section>
  <div class="arrow" aria-hidden="true">&rarr;</div>
  <section class="hop" id="hop-orders"><h3>orders service</h3><dl>
    <dt>sub</dt><dd data-field="sub" id="chain-orders-sub">…</dd>
    <dt>aud</dt><dd data-field="aud">…</dd><dt>scopes</dt><dd data-field="scopes">…</dd>
    <dt>act</dt><dd data-field="act">…</dd><dt>time left</dt><dd data-field="left">…</dd></dl></section>
  <div class="arrow" aria-hidden="true">&rarr;</div>
  <section class="hop" id="hop-customers"><h3>customers service</h3><dl>
    <dt>sub</dt><dd data-field="sub" id="chain-customers-sub">…</dd>
    <dt>aud</dt><dd data-field="aud">…</dd><dt>scopes</dt><dd data-field="scopes">…</dd>
    <dt>act</dt><dd data-field="act">…</dd><dt>time left</dt><dd data-field="left">…</dd></dl></section>
</div>
<details><summary>raw JSON of /orders/chain</summary><pre id="chain-result">loading…</pre></details>
<h2>GET /orders</h2>
<details><summary>raw JSON of /orders</summary><pre id="orders-result">loading…</pre></details>
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
function list(value) {
  return Array.isArray(value) && value.length ? value.join(" ") : "(none)";
}
function hop(id, whoami, status) {
  const box = document.getElementById(id);
  const ok = status === 200 && whoami !== null && typeof whoami === "object";
  const fields = ok ? {
    sub: String(whoami.sub), aud: list(whoami.aud), scopes: list(whoami.scopes),
    act: Array.isArray(whoami.act) && whoami.act.length ? whoami.act.join(" \\u2190 ") : "(none: minted by the gateway)",
    left: typeof whoami.exp === "number" ? Math.max(0, Math.round(whoami.exp - Date.now() / 1000)) + " s" : "?",
  } : { sub: "?", aud: "?", scopes: "?", act: "?", left: "?" };
  for (const [name, value] of Object.entries(fields)) {
    const el = box.querySelector('[data-field="' + name + '"]');
    if (el) { el.textContent = value; }
  }
  box.dataset.status = String(status);
  if (!ok) { box.classList.add("failed"); }
}
(async function () {
  try {
    const chain = await call("/orders/chain");
    const data = chain.data || {};
    hop("hop-orders", data.orders, chain.status);
    hop("hop-customers", data.customers, chain.status);
    show("chain-orders-sub", chain.status, describe(data.orders));
    show("chain-customers-sub", chain.status, describe(data.customers));
    show("chain-result", chain.status,
         chain.status + "\\n" + (chain.data ? JSON.stringify(chain.data, null, 2) : chain.text));
  } catch (e) { show("chain-result", "error", String(e)); }
  try {
    const orders = await call("/orders");
    show("orders-result", orders.status,
         orders.status + "\\n" + (orders.data ? JSON.stringify(orders.data, null, 2) : orders.text));
  } catch (e) { show("orders-result", "error", String(e)); }
})();
"""


def message_page(title: str, message: str) -> str:
    """A plain page for refusals in the browser flow (CSRF failure, too many attempts)."""
    return _layout(
        title,
        f'<h1>{escape(title)}</h1>\n<p class="error">{escape(message)}</p>\n'
        '<p><a href="/login">Back to sign in</a></p>',
    )
