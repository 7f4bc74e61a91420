"""The tracekit version, written into every Analysis and manifest."""

__version__ = "0.1.0"
