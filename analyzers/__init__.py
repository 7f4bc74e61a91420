"""The offline analysis, one package per stage (imports the core, never collectors or a front end).

- ``read``: input to tables: finding the files (``discover``), Kineto JSON (``kineto``, on the
  bounded-memory reader ``json_stream``) and Nsight Systems SQLite (``nsys``) parsers, a rank's
  identity (``loader``), and what the run directory says (``run_facts``, ``run_config``,
  vLLM's logs: ``vllm_log``, ``engine_warnings``);
- ``rank``: the per-rank stages (``rank_stages``: classify → attribute → steps → roofline → KV
  stalls, the invariant checked after each) and what a rank leaves behind (``rank_result``,
  ``digest``);
- ``run``: the run-level stages over every rank's digest (``run_stages``: collectives, bubbles,
  MoE, KV, step statistics, the verdict) and the run's figures (``engine_timeline``,
  ``throughput``, ``window``);
- ``planning``: the cost model (``step_cost`` per engine step, ``op_cost`` per op call), the
  layout planner (``plan``, ``presets``) and its calibration on captured runs;
- ``engine``: the one driver (``driver``: read, settle, per-rank stages, run stages) and what
  runs its tasks (``process_pool``, ``ray_executor``).
"""
