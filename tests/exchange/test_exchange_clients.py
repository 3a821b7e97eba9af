"""Every outgoing client exchanges the token for a host whose FORWARD_TO entry names an audience.

One table of clients (requests session and auth, httpx Client and AsyncClient, both
instrumentations) against the real loopback token endpoint and recording downstream servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from _exchange_support import (
    CLIENTS,
    CUSTOMERS,
    ORDERS,
    SECRET,
    RecordingServer,
    bound,
    running,
    service_settings,
)

from token_middleware.core.forwarding import exchanger_for
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator

if TYPE_CHECKING:
    from _endpoint import TokenEndpoint
    from _exchange_support import Caller, Downstream


@pytest.mark.parametrize("client", CLIENTS)
def test_the_call_carries_a_token_exchanged_for_the_hosts_audience(
    client: str,
    make_caller: Callable[[str], Caller],
    alice: AccessToken,
    endpoint: TokenEndpoint,
    downstream: Downstream,
    customers_validator: TokenValidator,
) -> None:
    seen = make_caller(client)(downstream.url())
    assert seen is not None and seen.startswith("Bearer ")
    assert seen != f"Bearer {alice.raw}"  # never the caller's own token
    received = customers_validator.validate(seen[7:])  # what the customers service accepts
    assert received.subject == "alice"
    assert received.audience == (CUSTOMERS,)
    assert received.actors == (ORDERS,)
    assert received.client_id == ORDERS
    assert received.scopes == frozenset({"customers:read"})
    assert received.expires_at is not None and alice.expires_at is not None
    assert received.expires_at <= alice.expires_at
    assert received.jti != alice.jti
    [call] = endpoint.calls
    assert (call.client_id, call.audience, call.subject_fingerprint) == (ORDERS, CUSTOMERS, alice.fingerprint)
    assert downstream.seen == [("/whoami", seen)]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_second_call_uses_the_cached_token(
    client: str, make_caller: Callable[[str], Caller], alice: AccessToken, endpoint: TokenEndpoint,
    downstream: Downstream,
) -> None:
    call = make_caller(client)
    first, second = call(downstream.url()), call(downstream.url("/customers/alice"))
    assert first == second
    assert len(endpoint.calls) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_an_entry_without_audience_forwards_the_token_as_it_is(
    client: str, make_caller: Callable[[str], Caller], alice: AccessToken, endpoint: TokenEndpoint,
    plain_downstream: Downstream,
) -> None:
    assert make_caller(client)(plain_downstream.url()) == f"Bearer {alice.raw}"
    assert endpoint.calls == []  # forwarding costs no exchange


@pytest.mark.parametrize("client", CLIENTS)
def test_hosts_not_listed_get_nothing_and_cost_no_exchange(
    client: str, make_caller: Callable[[str], Caller], alice: AccessToken, endpoint: TokenEndpoint,
    downstream: Downstream,
) -> None:
    assert make_caller(client)(downstream.url().replace("127.0.0.1", "localhost")) is None
    assert endpoint.calls == []


@pytest.mark.parametrize("client", CLIENTS)
def test_no_current_token_means_no_header_and_no_exchange(
    client: str, make_caller: Callable[[str], Caller], orders: Settings, endpoint: TokenEndpoint,
    downstream: Downstream,
) -> None:
    with bound(None, orders):
        assert make_caller(client)(downstream.url()) is None
    assert endpoint.calls == []


@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_of_an_app_shares_one_cache(
    client: str, make_caller: Callable[[str], Caller], alice: AccessToken, endpoint: TokenEndpoint,
    downstream: Downstream, orders: Settings,
) -> None:
    via_session = make_caller("requests-session")(downstream.url())
    assert make_caller(client)(downstream.url()) == via_session
    assert len(endpoint.calls) == 1
    assert exchanger_for(orders) is exchanger_for(orders)


def test_the_token_endpoint_is_taken_from_discovery_or_from_the_setting(
    endpoint: TokenEndpoint, jwks_file: str, downstream: Downstream, mint: Callable[..., AccessToken],
    make_caller: Callable[[str], Caller],
) -> None:
    discovered = service_settings(endpoint, jwks_file, FORWARD_TO=f"{downstream.netloc}={CUSTOMERS}")
    explicit = service_settings(endpoint, jwks_file, FORWARD_TO=f"{downstream.netloc}={CUSTOMERS}",
                                TOKEN_ENDPOINT=endpoint.token_url)
    call = make_caller("requests-session")
    for settings in (discovered, explicit):
        with bound(mint("alice"), settings):
            assert call(downstream.url()) is not None
    assert len(endpoint.exchanges) == 2
    assert exchanger_for(discovered).token_endpoint is None  # found by discovery, kept there
    assert exchanger_for(explicit).token_endpoint == endpoint.token_url


def test_a_chain_of_two_exchanges_nests_the_actors(
    endpoint: TokenEndpoint, jwks_file: str, downstream: Downstream, issuer: object,
    make_caller: Callable[[str], Caller], customers_validator: TokenValidator,
) -> None:
    # billing-service received a token the orders service exchanged for it, and exchanges it on.
    orders = Settings.from_mapping({
        "ISSUER": endpoint.issuer, "AUDIENCE": ORDERS, "PUBLIC_KEYS": jwks_file, "ALGORITHMS": "ES256",
        "CLIENT_ID": ORDERS, "CLIENT_SECRET": SECRET, "FORWARD_TO": f"{downstream.netloc}=billing-service",
    })
    billing = Settings.from_mapping({
        "ISSUER": endpoint.issuer, "AUDIENCE": "billing-service", "PUBLIC_KEYS": jwks_file,
        "ALGORITHMS": "ES256", "CLIENT_ID": "billing-service", "CLIENT_SECRET": "billing-secret",
        "FORWARD_TO": f"{downstream.netloc}={CUSTOMERS}",
    })
    raw = issuer.mint(sub="alice", audience=[ORDERS], scopes=["billing:read", "customers:read"])  # type: ignore[attr-defined]
    call = make_caller("httpx-client")
    with bound(TokenValidator(orders).validate(raw), orders):
        for_billing = call(downstream.url())
    assert for_billing is not None
    billing_token = TokenValidator(billing).validate(for_billing[7:])
    assert billing_token.actors == (ORDERS,)
    with bound(billing_token, billing):
        for_customers = call(downstream.url())
    assert for_customers is not None
    received = customers_validator.validate(for_customers[7:])
    assert received.actors == ("billing-service", ORDERS)  # nearest first
    assert received.actor == "billing-service"
    assert received.subject == "alice"


@pytest.mark.parametrize("client", ["requests-session", "instrumented-requests"])
def test_an_exchanged_token_is_removed_before_a_proxy_given_on_the_call_sees_it(
    client: str, alice: AccessToken, downstream: Downstream, make_caller: Callable[[str], Caller],
) -> None:
    # The auth runs before requests knows the call's proxies=; send() knows them, and strips the
    # exchanged token just as it strips the caller's own.
    import requests

    from token_middleware.requests_auth import propagating_session

    make_caller(client)  # turns the instrumentation on for its case
    with running(RecordingServer()) as proxy:
        proxies = {"http": f"http://{proxy.netloc}"}
        if client == "requests-session":
            with propagating_session() as session:
                session.get(downstream.url(), proxies=proxies, timeout=10)
        else:
            requests.get(downstream.url(), proxies=proxies, timeout=10)
        assert [auth for _, auth in proxy.seen] == [None]
    assert downstream.seen == []
