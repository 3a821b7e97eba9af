"""The gateway's edge job: forwarding an authenticated request to its route's upstream service.

- :mod:`.proxy`    ``Proxy``: the forwarding WSGI app (header hygiene, streaming, 502/504)
- :mod:`.upstream` ``UpstreamPool``: the keep-alive HTTP/1.1 client the proxy forwards with
"""
