"""The state one app owns, shared by every adapter: the validator, with its settings and caches.

Trusted: only what built it, the deployer's validated settings. There is no module-level
instance: the Flask extension keeps one in ``app.extensions["token_middleware"]``, the Django app
keeps one on its ``AppConfig``, and the WSGI middleware keeps its validator itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings
from .validator import TokenValidator


@dataclass(frozen=True)
class Runtime:
    """What one app owns: the validator (with its settings and key cache).

    The settings are read through the validator, so the two can never disagree.
    """

    validator: TokenValidator

    @property
    def settings(self) -> Settings:
        return self.validator.settings

    @property
    def realm(self) -> str:
        """The ``realm`` of this app's ``WWW-Authenticate`` challenges."""
        return self.validator.settings.realm
