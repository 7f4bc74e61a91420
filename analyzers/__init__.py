"""The offline pipeline: load traces, classify names, attribute time, derive inference figures."""
