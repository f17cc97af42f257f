"""The bench's scenarios: engine alone, through Envoy, scale."""

__all__: list[str] = []
