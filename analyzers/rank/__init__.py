"""The per-rank stages: one rank's events into its exact partition and figures.

``rank_stages`` holds the stage list and its loop (``RankState -> RankState``, the invariant
checked after each): ``classify`` (the name rules of ``rules``), ``attribute`` (the exclusive
partition by ``interval_sweep``), the engine steps (``step_annotations``), ``roofline_stage``
(compute vs HBM per op call by ``op_bounds``, else per step) and ``kv_stall``. ``rank_result``
and ``digest`` keep what the run-level stages need once the events are gone (collective calls
and their sizes: ``message_size``); ``op_table``, every op's time by name and shape, where a
diff asks for it.
"""
