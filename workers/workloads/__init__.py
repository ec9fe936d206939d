"""Workloads: the interface (base.py) and the built-ins. The registry loads built-ins by name."""

from lrsearch.workers.workloads.base import Dataset, LossFn, Task, Workload

__all__ = ["Dataset", "LossFn", "Task", "Workload"]
