"""``TokenMiddleware``: validate a present bearer token on every Django request.

Trusted: the ``TOKEN_MIDDLEWARE`` settings and the keys they point at; never a key a token
names (``jku``, ``x5u``, ``jwk``, ``x5c``). For each request the middleware reads
``Authorization`` (and ``?access_token=`` only with ``ALLOW_QUERY_TOKEN``), whatever the view
and method. No bearer credentials: the request goes on with ``request.access_token = None``,
and the scope decorators decide. A malformed header (400), an invalid token (401) or unavailable
keys (503, ``Retry-After``) are answered here with an RFC 6750 JSON response.

With a valid token:

* ``request.access_token`` is the :class:`~token_middleware.core.token.AccessToken`;
* ``request.user`` becomes a stateless :class:`~.users.TokenUser` unless another
  authentication (``AuthenticationMiddleware``, listed *before* this one) found an authenticated
  user; the session is then looked at lazily, only if ``request.user`` is used;
* the core ``ContextVar`` holds the token until the response is closed (streamed bodies
  included), so outgoing propagation sees it.

Sync and async capable. Settings are validated when the middleware is built (server start-up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject

from ..core.context import bind_token, reset_token
from ..core.errors import BearerError
from ..core.token import AccessToken
from ..core.runtime import Runtime
from .apps import get_runtime
from .responses import bearer_error_response
from .users import TokenUser

#: Where the decorators find the realm of the runtime that validated this request.
REQUEST_RUNTIME_ATTR = "_token_middleware_runtime"


def _credentials(request: HttpRequest) -> tuple[str | None, str]:
    return request.META.get("HTTP_AUTHORIZATION"), request.META.get("QUERY_STRING", "")


def _attach(request: HttpRequest, token: AccessToken | None, runtime: Runtime) -> None:
    setattr(request, REQUEST_RUNTIME_ATTR, runtime)
    setattr(request, "access_token", token)
    if token is None:
        return
    previous = getattr(request, "user", None)
    if previous is None:
        setattr(request, "user", TokenUser(token))
        return

    def pick() -> Any:
        return previous if previous.is_authenticated else TokenUser(token)

    setattr(request, "user", SimpleLazyObject(pick))


def _on_close(response: HttpResponseBase, callback: Callable[[], None]) -> None:
    # Django runs these when the server closes the response (after streaming the body).
    response._resource_closers.append(callback)


class TokenMiddleware:
    """One ``MIDDLEWARE`` entry: ``"token_middleware.django_ext.middleware.TokenMiddleware"``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        runtime = get_runtime()  # ImproperlyConfigured at start-up, naming the fix
        runtime.validator.prefetch()

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        runtime = get_runtime()
        try:
            token = runtime.validator.authenticate(*_credentials(request))
        except BearerError as err:
            return bearer_error_response(request, err, runtime.realm)
        _attach(request, token, runtime)
        handle = bind_token(token, runtime.settings)
        try:
            response: HttpResponseBase = self.get_response(request)
        except BaseException:
            reset_token(handle)
            raise
        _on_close(response, partial(reset_token, handle))
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        runtime = get_runtime()
        authorization, query = _credentials(request)
        try:
            if authorization is None and not runtime.settings.allow_query_token:
                token = None
            else:
                # Validation may fetch keys: keep blocking I/O off the event loop.
                token = await sync_to_async(runtime.validator.authenticate, thread_sensitive=False)(
                    authorization, query
                )
        except BearerError as err:
            return bearer_error_response(request, err, runtime.realm)
        _attach(request, token, runtime)
        handle = bind_token(token, runtime.settings)
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            response = await get_response(request)
        except BaseException:
            reset_token(handle)
            raise
        if response.streaming:
            # The body is iterated in this task after we return; the server closes it later
            # (possibly from another context, where reset_token only clears that context).
            _on_close(response, partial(reset_token, handle))
        else:
            reset_token(handle)
        return response
