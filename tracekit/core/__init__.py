"""The core: what every other part of tracekit shares, importing nothing but itself.

- ``trace_model``: the per-rank columnar event table (int64 ns) and the run's name table;
- ``analysis``: the Analysis result, its versioned JSON schema and the invariant check;
  ``run_context`` (what the figures cover), ``partition`` (a rank's segments) and
  ``stragglers`` (the stragglers report's structs) and ``kv_reads`` (the KV bytes decode
  attention read, part of the KV report) go with it;
- ``buckets``: the attribution buckets and the priority that resolves overlap;
- ``regime_table``: the regimes, their thresholds and advice, and every other threshold;
- ``layout``: the one parallelism layout type (DP / TP / PP / EP) and its label;
- ``rundir``: the run-directory format (manifest, steps/, traces/, logs/);
- ``hardware``, ``gpu_identify``, ``cpu_probe``: device peaks (the GPU spec table, a GPU
  known by its properties, the CPU probe and its recorded form);
- ``plan_result``: the plan and calibration results and their JSON;
- ``errors`` (the one domain error) and ``version``.
"""
