"""``yolo-spd study``: does a block help small objects, and at what cost? Paired, seeded ablations with intervals.

Every model trains once per seed with the same settings (on tiles of the data with ``tile=``), every finished run is
scored on the same val split by the same evaluator (sliced with ``slice=``), and each model is compared with the
first, seed by seed, with two intervals: a seed-level Student t interval and a paired bootstrap over the val images.

- :mod:`.plan`: :class:`~.plan.StudyPlan` (the study as one checked value) and :func:`~.plan.run_study`.
- :mod:`.runs`: one run's folder, spec, training, resumption and reuse rules.
- :mod:`.stats`: the intervals, and COCO's accumulation re-run on bootstrap draws of the val images.
- :mod:`.report`: ``study.json``, ``study.md`` and ``study.png``.
- :mod:`.control`: ``control=wide``, the baseline widened to the costliest variant's GFLOPs.
- :mod:`.contrast`: two studies on the same val images: does a variant's difference move between them?
"""
