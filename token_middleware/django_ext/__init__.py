"""Django integration: the ``token_middleware`` app, its middleware, decorators, mixin and checks.

    INSTALLED_APPS += ["token_middleware.django_ext"]
    MIDDLEWARE += ["token_middleware.django_ext.middleware.TokenMiddleware"]
    TOKEN_MIDDLEWARE = {"ISSUER": "https://gateway.example", "AUDIENCE": "customers-service"}

Trusted: the ``TOKEN_MIDDLEWARE`` setting (names missing from it fall back to
``TOKEN_MIDDLEWARE_*`` environment variables), the keys it points at, and the code its
``IS_REVOKED``, ``CLAIM_CHECKS`` and ``USER_LOADER`` dotted paths name; nothing a request says
about keys. Works under WSGI and ASGI. Submodules import Django; this package module imports
nothing.
"""
