"""The gateway's issuing job: its signing keys, the tokens it mints, and what it publishes.

- :mod:`.keystore`  ``KeyStore``: signing keys on disk, shared by all workers, rotation
- :mod:`.minting`   ``TokenMinter``: RFC 9068 tokens, reused per principal and route
- :mod:`.wellknown` the JWKS and OpenID discovery documents
- :mod:`.exchange`  ``TokenExchange``: the RFC 8693 token endpoint, ``ClientStore``: its clients
"""
