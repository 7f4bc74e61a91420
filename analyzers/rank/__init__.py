"""analyzers/rank."""
