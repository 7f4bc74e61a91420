"""The run-level stages: every rank's digest into the Analysis.

``run_stages`` holds the stage list and its loop (``RunState -> RunState``): warnings, the
engine timeline (``engine_timeline``), the compute-vs-HBM basis, what the window covers
(``overhead``, ``step_flags``), the peaks' origin (``peak_report``), KV, collectives across
ranks (matched by ``collective_match``; ``collective_report``, and who arrives last:
``stragglers``), pipeline bubbles and MoE (``bubbles``), step statistics and the
verdict (``verdict``). ``window`` settles the run's common window; ``throughput`` is the decode
rate the compare and calibration read.
"""
