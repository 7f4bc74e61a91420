"""tracekit/core."""
