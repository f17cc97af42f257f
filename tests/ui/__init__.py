"""Dashboard: decision statistics, SSE streams, the /ui page in a real browser."""
