"""analyzers/read."""
