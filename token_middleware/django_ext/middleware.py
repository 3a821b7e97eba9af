"""``TokenMiddleware``: validate a present bearer token on every Django request (WSGI and ASGI).

Trusted: the ``TOKEN_MIDDLEWARE`` settings and the keys they point at; never a key a token
names (``jku``, ``x5u``, ``jwk``, ``x5c``). For each request the middleware reads
``Authorization`` (and ``?access_token=`` only with ``ALLOW_QUERY_TOKEN``), whatever the view
and method. No bearer credentials: the request goes on with ``request.access_token = None``,
and the scope decorators decide. A malformed header (400), an invalid token (401) or unavailable
keys (503, ``Retry-After``) are answered here with an RFC 6750 JSON response.

With a valid token:

* ``request.access_token`` is the :class:`~token_middleware.core.token.AccessToken`;
* ``request.user`` (and ``await request.auser()``) is the token's user
  (:mod:`~.users`: the ``USER_LOADER``'s, else a stateless ``TokenUser``) unless another
  authentication (``AuthenticationMiddleware``, listed *before* this one) found an
  authenticated user; the session is then looked at lazily, only if ``request.user`` is used;
* the core ``ContextVar`` holds the token until the response is closed (streamed bodies
  included), so outgoing propagation sees it;
* the ``token_authenticated`` signal is sent (:mod:`.signals`).

Each refusal is written to the ``token_middleware.audit`` log, told to the ``OBSERVERS`` and sent
as ``token_refused`` (:mod:`.signals`, :mod:`token_middleware.core.audit`).

The settings and the validator are built when the middleware is loaded, so a server with bad
settings refuses to start (``ImproperlyConfigured`` naming the fix). Under ASGI a token found
fresh in the verified-token cache is accepted on the event loop; only a cache miss, which may
fetch keys (or a token checked by an ``IS_REVOKED`` hook, which may block), is validated in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject

from ..core.bearer import extract_token
from ..core.context import bind_token, reset_token
from ..core.errors import BearerError
from ..core.runtime import Runtime
from ..core.token import AccessToken
from .apps import runtime_cache
from .conf import DjangoRuntime
from .responses import bearer_error_response
from .signals import authenticated, refused
from .users import aload_user, load_user

#: Where the decorators find the realm of the runtime that validated this request.
REQUEST_RUNTIME_ATTR = "_token_middleware_runtime"
#: The token's user (the loader's or a ``TokenUser``), for DRF's authentication class.
REQUEST_USER_ATTR = "_token_middleware_user"


def _credentials(request: HttpRequest) -> tuple[str | None, str]:
    meta = request.META
    return meta.get("HTTP_AUTHORIZATION"), meta.get("QUERY_STRING", "")


async def _user_after(previous_auser: Callable[[], Awaitable[Any]] | None, user: Any) -> Any:
    # ``request.auser()``: an earlier authentication's user when it found one, else the token's.
    if previous_auser is not None:
        found = await previous_auser()
        if found.is_authenticated:
            return found
    return user


def _attach(request: HttpRequest, token: AccessToken | None, user: Any, runtime: Runtime) -> None:
    attrs = request.__dict__  # what an earlier middleware set on this request
    attrs[REQUEST_RUNTIME_ATTR] = runtime
    attrs["access_token"] = token
    if token is None:
        return
    attrs[REQUEST_USER_ATTR] = user
    previous = attrs.get("user")
    if previous is None:
        attrs["user"] = user
    else:
        attrs["user"] = SimpleLazyObject(lambda: previous if previous.is_authenticated else user)
    attrs["auser"] = partial(_user_after, attrs.get("auser"), user)


def _on_close(response: HttpResponseBase, callback: Callable[[], None]) -> None:
    # Django runs these when the server closes the response (after streaming the body).
    response._resource_closers.append(callback)  # type: ignore[attr-defined]


class TokenMiddleware:
    """One ``MIDDLEWARE`` entry: ``"token_middleware.django_ext.middleware.TokenMiddleware"``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.runtimes = runtime_cache()
        runtime = self.runtimes.get()  # ImproperlyConfigured at start-up, naming the fix
        runtime.validator.prefetch()

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        runtime = self.runtimes.get()
        token = None
        try:
            token = runtime.validator.authenticate(*_credentials(request))
            user = None if token is None else load_user(runtime.user_loader, token)
        except BearerError as err:
            refused(TokenMiddleware, runtime.validator, request, err, token=token)
            return bearer_error_response(request, err, runtime.realm)
        _attach(request, token, user, runtime)
        if token is not None:
            authenticated(TokenMiddleware, request, token)
        handle = bind_token(token, runtime.settings, runtime.validator.watch)
        try:
            response: HttpResponseBase = self.get_response(request)
        except BaseException:
            reset_token(handle)
            raise
        _on_close(response, partial(reset_token, handle))
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        runtime = self.runtimes.get()
        token = None
        try:
            token = await self._avalidate(runtime, *_credentials(request))
            user = None if token is None else await aload_user(runtime.user_loader, token)
        except BearerError as err:
            refused(TokenMiddleware, runtime.validator, request, err, token=token)
            return bearer_error_response(request, err, runtime.realm)
        _attach(request, token, user, runtime)
        if token is not None:
            authenticated(TokenMiddleware, request, token)
        handle = bind_token(token, runtime.settings, runtime.validator.watch)
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

    @staticmethod
    async def _avalidate(runtime: DjangoRuntime, authorization: str | None, query: str) -> AccessToken | None:
        validator = runtime.validator
        token = validator.cached(authorization)  # no parsing and no I/O: fine on the loop
        if token is not None:
            return token
        if extract_token(authorization, query, allow_query=runtime.settings.allow_query_token) is None:
            return None  # no bearer credentials (parsing only, no I/O)
        # A cache miss may fetch keys, and IS_REVOKED may block: keep both off the event loop.
        return await sync_to_async(validator.authenticate, thread_sensitive=False)(authorization, query)
