"""Where a job's record lives, by how often it is read: the storage tiers.

1. **SQL, bounded** (``metric_point``): what the dashboard draws, live. Every epoch point; at most
   ``settings.metrics_max_step_points`` step points per run (every step of a short run; for a long one the
   first steps one by one, then buckets keeping the mean, min and max of each value: ``buckets.py``).
   GET /jobs/{id}/metrics and the event stream send these.
2. **The step archive** (``step_archive.py``): every step of the job (loss, accuracy, learning rate, batch
   type, step time, run, epoch, step, train time) as one Parquet file beside its weights,
   ``<artifact_dir>/<job id>/steps.parquet``, listed and downloaded as the job's artifact ``steps.parquet``.
   Written in chunks while the job runs (bounded memory), merged into one file when it ends.
3. **Files beside it** (``app/artifacts.py``): the trained weights, and a running job's checkpoints.

``retention.py`` expires each tier of finished jobs past its age (``dynds retention [--dry-run]``); a queued
or running job is never touched.
"""
