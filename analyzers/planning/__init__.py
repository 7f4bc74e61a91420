"""analyzers/planning."""
