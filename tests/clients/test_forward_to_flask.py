"""FORWARD_TO set in Flask's app.config reaches every outgoing client, through a real Flask app.

Each test builds a Flask app whose only view calls a URL with one outgoing client, built the
way an app builds it at start-up: before any request, with no allowlist of its own. The view
runs under the real extension (the token validated, the settings bound with it), and the call
goes to real loopback servers. ``TOKEN_MIDDLEWARE_FORWARD_TO`` is unset unless a test sets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("flask")

from flask import Flask, jsonify, request  # noqa: E402

from _clients_support import CLIENTS, Caller  # noqa: E402

from token_middleware.core.errors import ConfigurationError  # noqa: E402
from token_middleware.core.forwarding import ForwardTo  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402
from token_middleware.flask_ext import TokenAuth  # noqa: E402

if TYPE_CHECKING:
    from conftest import Echo, MintToken

pytestmark = pytest.mark.usefixtures("clean_environment")


def service_config(service_settings: Settings) -> dict[str, Any]:
    """The validation settings of the clients' test service, as Flask config keys."""
    return {
        "TOKEN_MIDDLEWARE_ISSUER": service_settings.issuer,
        "TOKEN_MIDDLEWARE_AUDIENCE": service_settings.audience,
        "TOKEN_MIDDLEWARE_PUBLIC_KEYS": service_settings.public_keys,
        "TOKEN_MIDDLEWARE_ALGORITHMS": "ES256",
    }


def flask_app(service_settings: Settings, caller: Caller, forward_to: str | None) -> Flask:
    """The app: its settings in ``app.config`` only; ``GET /call?url=…`` calls ``url``."""
    app = Flask(__name__)
    app.config.update(service_config(service_settings))
    if forward_to is not None:
        app.config["TOKEN_MIDDLEWARE_FORWARD_TO"] = forward_to
    TokenAuth(app)

    @app.get("/call")
    def call() -> Any:
        return jsonify(authorization=caller(request.args["url"]))

    return app


Through = Callable[..., "str | None"]


@pytest.fixture
def alice_raw(mint_token: MintToken) -> str:
    return mint_token("alice").raw


@pytest.fixture
def alice_bearer(alice_raw: str) -> str:
    return f"Bearer {alice_raw}"


@pytest.fixture
def through_flask(
    service_settings: Settings, make_caller: Callable[[str, ForwardTo], Caller], alice_raw: str
) -> Through:
    """``through_flask(client, url, config=…, client_forward_to=…)``.

    Builds the client (``client_forward_to``: its own allowlist), then the app (``config``: its
    ``TOKEN_MIDDLEWARE_FORWARD_TO``), sends alice's token to ``/call`` and returns the
    ``Authorization`` that the server at ``url`` saw.
    """
    raw = alice_raw

    def run(client: str, url: str, *, config: str | None, client_forward_to: ForwardTo = None) -> str | None:
        app = flask_app(service_settings, make_caller(client, client_forward_to), config)
        response = app.test_client().get("/call", query_string={"url": url}, headers={"Authorization": f"Bearer {raw}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        seen: str | None = response.get_json()["authorization"]
        return seen

    return run


@pytest.mark.parametrize("client", CLIENTS)
def test_forward_to_in_app_config_only(
    client: str, through_flask: Through, echo: Echo, other_echo: Echo, alice_bearer: str
) -> None:
    config = f"example.invalid, {echo.netloc}"
    assert through_flask(client, echo.url(), config=config) == alice_bearer
    assert through_flask(client, other_echo.url(), config=config) is None  # not listed


@pytest.mark.parametrize("client", CLIENTS)
def test_no_forward_to_anywhere_sends_nothing(client: str, through_flask: Through, echo: Echo) -> None:
    assert through_flask(client, echo.url(), config=None) is None


@pytest.mark.parametrize("client", CLIENTS)
def test_an_allowlist_given_by_hand_wins_over_the_settings(
    client: str, through_flask: Through, echo: Echo, other_echo: Echo, alice_bearer: str
) -> None:
    by_hand = [other_echo.netloc]
    assert through_flask(client, echo.url(), config=echo.netloc, client_forward_to=by_hand) is None
    assert through_flask(client, other_echo.url(), config=echo.netloc, client_forward_to=by_hand) == alice_bearer


@pytest.mark.parametrize("client", CLIENTS)
def test_the_environment_alone_still_works(
    client: str, through_flask: Through, echo: Echo, alice_bearer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flask reads a NAME missing from app.config from the environment: same settings, same list.
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", echo.netloc)
    assert through_flask(client, echo.url(), config=None) == alice_bearer


@pytest.mark.parametrize("client", CLIENTS)
def test_the_apps_settings_win_over_the_environment_the_client_saw(
    client: str, through_flask: Through, echo: Echo, other_echo: Echo, alice_bearer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client is built while the environment names other_echo; the app's config names echo.
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", other_echo.netloc)
    assert through_flask(client, echo.url(), config=echo.netloc) == alice_bearer
    assert through_flask(client, other_echo.url(), config=echo.netloc) is None


def test_the_request_without_a_token_sends_nothing(
    service_settings: Settings, make_caller: Callable[[str, ForwardTo], Caller], echo: Echo
) -> None:
    app = flask_app(service_settings, make_caller("requests-session", None), echo.netloc)
    response = app.test_client().get("/call", query_string={"url": echo.url()})
    assert response.get_json() == {"authorization": None}


@pytest.mark.parametrize(
    ("entry", "fix"),
    [
        ("http://customers:8002", "write 'customers:8002'"),
        ("::1", "brackets"),
        ("customers:99999", "1-65535"),
    ],
)
def test_a_bad_entry_in_app_config_stops_the_app(entry: str, fix: str, service_settings: Settings) -> None:
    app = Flask(__name__)
    app.config.update(service_config(service_settings), TOKEN_MIDDLEWARE_FORWARD_TO=f"customers, {entry}")
    with pytest.raises(ConfigurationError) as info:
        TokenAuth(app)
    assert info.value.setting == "FORWARD_TO"
    assert fix in str(info.value)
