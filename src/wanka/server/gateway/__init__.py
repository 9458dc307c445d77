"""The gateway: one authenticated URL per service, ``/services/{tenant}/{name}/…``, proxied to the
service's ready replicas (docs/services.md).

- :mod:`.meter`: each service's request rate and requests in flight, the autoscaler's signal;
- :mod:`.board`: where each service's replicas are and which are ready (readiness probes);
- :mod:`.proxy`: the ASGI app that authenticates, routes (least outstanding requests), retries,
  streams and counts.

It listens on a port of its own (``wanka server --gateway-port``): the pages a tenant's service
serves must never share the console's origin, where a script acts as whoever is signed in.
"""
