"""The browser page, in Debian's chromium driven by playwright: log in through the gateway's
login page, then the page behind it shows the identity each service saw.

Never downloads a browser: it uses /usr/bin/chromium, and skips (with the reason) without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo_gateway.supervisor import DemoStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); `./run test` installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_login_page_then_app_page_shows_the_user_at_both_services(
    browser: Any, stack: DemoStack, users: Any, user: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{stack.gateway_url}/app")  # not logged in yet: the login page
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", users[user][0])
        page.click("[type=submit]")
        page.wait_for_url("**/app*")

        for selector in ("#chain-orders-sub", "#chain-customers-sub"):
            page.wait_for_function(
                "([sel, user]) => document.querySelector(sel)?.textContent.trim() === user",
                arg=[selector, user],
            )
        assert page.inner_text("#chain-orders-sub").strip() == user
        assert page.inner_text("#chain-customers-sub").strip() == user
        page.wait_for_function("() => document.querySelector('#orders-result')?.textContent.trim()")
        assert (page.text_content("#orders-result") or "").strip()  # behind a closed disclosure

        # The chain as a picture, first on the page: one box per hop, each hop's own token.
        page.wait_for_function("() => document.querySelector('#hop-customers')?.dataset.status === '200'")
        field = lambda hop, name: page.inner_text(f"#hop-{hop} [data-field={name}]").strip()  # noqa: E731
        assert field("gateway", "sub") == user
        assert field("orders", "aud") == "orders-service" and field("customers", "aud") == "customers-service"
        assert field("customers", "act") == "orders-service"
        assert field("customers", "scopes") == "customers:read"
        assert "orders:read" in field("orders", "scopes")
        assert field("orders", "left").endswith(" s") and field("customers", "left").endswith(" s")
        assert page.evaluate("() => document.querySelector('#chain').getBoundingClientRect().top"
                             " < document.querySelector('#orders-result').closest('details').getBoundingClientRect().top")
        assert not page.is_visible("#chain-result")  # the raw JSON waits behind a disclosure
        artefacts = Path(os.environ.get("E2E_ARTIFACTS_DIR") or tmp_path_factory.mktemp("artifacts"))
        artefacts.mkdir(parents=True, exist_ok=True)
        shot = artefacts / f"app-chain-{user}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
        print(f"screenshot: {shot}")
    finally:
        context.close()
