"""Keep the caller's identity in work sent to other threads.

The current access token lives in a ``ContextVar`` (:mod:`token_middleware.core.context`). A plain
``ThreadPoolExecutor`` runs tasks in its worker threads' own context, so a fan-out call made
there sees no token and propagates nothing. Two helpers fix that with ``contextvars``:

- :class:`ContextThreadPoolExecutor`: ``submit`` and ``map`` run each task in a copy of the
  submitting thread's context, taken at submit time::

      with ContextThreadPoolExecutor(max_workers=8) as pool:
          customers = list(pool.map(fetch_customer, ids))   # each call sees the caller's token

- :func:`with_current_context`: wraps a function so that it runs in a copy of the context that
  was current when it was wrapped, for executors and thread APIs you do not construct yourself::

      threading.Thread(target=with_current_context(fetch_customer), args=(42,)).start()

Each task gets its own copy, so a task that changes a context variable does not affect the
submitter or other tasks. Nothing here reads or logs the token.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["ContextThreadPoolExecutor", "with_current_context"]

P = ParamSpec("P")
T = TypeVar("T")


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in a copy of the submitter's ``contextvars``.

    ``map`` goes through :meth:`submit`, so it is covered as well. Use it in place of
    ``ThreadPoolExecutor`` wherever a request handler fans out calls.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(functools.partial(context.run, fn, *args, **kwargs))


def with_current_context(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` bound to a snapshot of the current context; each call runs in its own copy of it.

    The snapshot is taken now, in the caller's thread; calls may happen later, on any thread,
    concurrently.
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> T:
        return context.copy().run(fn, *args, **kwargs)

    return run_in_context
