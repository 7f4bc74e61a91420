"""The cost model and the planner: the roofline's model, used to predict layouts not at hand.

``step_cost`` models an engine step (model config, a rank's shard, FLOPs and bytes per step),
``op_cost`` one op call from its recorded shapes; ``plan`` predicts every layout of N GPUs for
a model (``presets``, a config.json or a HF id in the local cache: ``hf_cache``; precisions:
``quantization``) and workload; ``slo`` ranks under latency targets; ``suggest`` is the
command's one call (the plan, and what would fit when nothing does); ``validation`` checks
predictions against public figures; ``calibration`` fits the model's factors to captured
runs, which ``run_measures`` reads.
"""
