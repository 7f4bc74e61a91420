"""Renderers: ``render(analysis) -> str | bytes``. Analysis code never prints."""
