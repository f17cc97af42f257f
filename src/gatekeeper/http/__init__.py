"""HTTP transports: ext_authz in Envoy's http_service mode (the fast path)."""
