"""Tracking: one small interface the engine logs through, with pluggable backends."""

from hairlab.tracking.base import LocalTracker, Tracker

__all__ = ["LocalTracker", "Tracker"]
