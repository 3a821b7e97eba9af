"""The gateway's edge job: forwarding an authenticated request to its route's upstream service.

- :mod:`.proxy`    ``Proxy``: the forwarding WSGI app (header hygiene, streaming, 502/504)
- :mod:`.wire`     which headers pass each way, request ids, the JSON of the edge's own answers
- :mod:`.body`     request bodies: framing checked (400), read whole and bounded (413, 408)
- :mod:`.upstream` ``UpstreamPool``: urllib3 keep-alive pools, strict response framing
"""
