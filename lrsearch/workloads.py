"""What a plug-in workload imports: ``from lrsearch.workloads import Workload``.

The contract itself lives in ``lrsearch.workers.workloads.base`` (see docs/workloads.md).
"""

from lrsearch.workers.workloads.base import Dataset, Mode, Task, Workload, default_metrics

__all__ = ["Dataset", "Mode", "Task", "Workload", "default_metrics"]
