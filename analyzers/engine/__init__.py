"""The one driver and what runs its tasks.

``driver`` runs every analysis: ``file_jobs.read_file`` per file (parse once, spill), then
``settle`` (identities, peaks, the common window), then ``file_jobs.analyze_file`` per file
(the per-rank stages), then the run-level stages. Tasks run here, in a ``process_pool`` or as
Ray tasks (``ray_executor``); ``stage_log`` is what ``-v`` says of each.
"""
