"""analyzers/engine."""
