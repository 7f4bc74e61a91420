"""The capture side: wrapping a vLLM command and recording every rank into a run directory.

The run-directory format that capture writes and analysis reads is defined in
``tracekit.rundir``. The wrapper and the vLLM plugin that live here are tracked by the
capture issue and are not built yet.
"""
