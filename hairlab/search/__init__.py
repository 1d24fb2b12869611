"""Searches that optimise: objectives (what a job returns), the Pareto front, its plot.

- :mod:`.objective`: the ``objective`` config key, checked before any run; the job's return.
- :mod:`.pareto`: the non-dominated runs of a set (NaN never on the front).
- :mod:`.plot`: accuracy against predicted latency, the front highlighted.
- :mod:`.front`: the front of an experiment or a sweep, printed, plotted, logged and tagged.

Importing this package imports neither torch nor mlflow.
"""

from __future__ import annotations
