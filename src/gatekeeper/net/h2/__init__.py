"""HTTP/2 (RFC 9113, h2c with prior knowledge) for the lean gRPC server: the wire format
(`wire`), one connection (`connection`) and one stream (`stream`)."""
