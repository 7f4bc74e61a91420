"""The capture side: wrapping a command and recording every vLLM rank into a run directory.

``capture`` runs the command and writes the run directory (format: ``tracekit.core.rundir``);
``vllm_plugin`` (entry point ``vllm.general_plugins``) installs ``engine_hooks`` and
``worker_hooks`` in every vLLM process under a capture; ``sweep`` runs one command under
several layouts.
"""
