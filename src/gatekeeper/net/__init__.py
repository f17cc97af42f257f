"""Protocol engines below the domain code: HTTP/1.1 (`http1`), HTTP/2 (`h2`) and gRPC on it
(`grpc_call`, `grpc_server`). Handlers are plain callables (or grpc method handlers); nothing
here knows about decisions, customers or Envoy's messages (that glue lives in `grpc/` and
`http/`)."""
