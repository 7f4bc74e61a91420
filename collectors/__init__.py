"""The capture side: wrapping a command and recording every vLLM rank into a run directory.

``capture`` runs the command and writes the run directory (format: ``tracekit.core.rundir``),
with ``machine`` (what the host is), ``peaks`` (the CPU probe, in the worker) and
``live_status`` (``--quiet``); ``vllm_plugin`` (entry point ``vllm.general_plugins``) installs
``engine_hooks`` and ``worker_hooks`` in every vLLM process under a capture, told what to do by
``settings`` and naming phases through ``phases``; ``layout`` rewrites a command for one layout
and ``sweep_client`` drives a server through one (the sweep itself is ``tracekit.sweep``);
``vllm_features`` finds each hook point in the installed vLLM by import (``tracekit doctor``);
``meta_files`` reads back what the plugin left in ``meta/`` for the manifest.
Imports the core only, never analyzers or a front end.
"""
