"""Reading: a user's PATH into per-rank tables, and what the run directory says.

``discover`` finds the trace files and what their names say; ``kineto`` (with
``kineto_events``, ``kineto_values``, ``json_stream``, ``column_table``) and ``nsys`` (with
``nsys_names``) parse them; ``loader`` makes each parsed rank a ``RankTrace`` with its identity
and loads a whole Trace; ``run_facts`` gathers the manifest's model, layout and KV cache and the
step records (``steps/``, else ``vllm_log``), ``run_config`` the scheduler limits and execution
mode, ``engine_warnings`` what vLLM's own log says.
"""
