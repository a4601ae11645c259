"""Kept for old imports: the gradient monitor lives in :mod:`ilif.monitors.gradients`."""

from ilif.monitors.gradients import GradientMonitor, GradientStats

__all__ = ["GradientMonitor", "GradientStats"]
