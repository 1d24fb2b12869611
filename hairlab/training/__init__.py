"""The training engine: device, seeds, loop, schedules, checkpoints, resume, divergence.

:func:`hairlab.training.job.train_job` is what ``hairlab run task=train`` calls.
"""
