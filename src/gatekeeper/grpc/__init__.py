"""gRPC transport: Envoy ext_authz, access-log settlement, rate limit service, own API.

Protobuf messages live only in this package; everything it calls is transport-free.
"""
