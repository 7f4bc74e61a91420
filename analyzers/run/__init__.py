"""analyzers/run."""
