"""lrsearch: a distributed learning-rate search service.

The public Python surface. The source folders (``service/``, ``workers/``, ``search/``,
``migrations/``) sit at the top of the repository and are mapped into this package by
``pyproject.toml``: ``lrsearch.service``, ``lrsearch.workers``, ``lrsearch.search``,
``lrsearch.migrations``. Users need only::

    from lrsearch import Client                  # the REST client
    from lrsearch.workloads import Workload      # to write a plug-in workload
"""

from typing import TYPE_CHECKING, Any

__all__ = ["Client", "LrsearchError"]

if TYPE_CHECKING:
    from lrsearch.service.client import Client, LrsearchError


def __getattr__(name: str) -> Any:
    # Lazy: every import of lrsearch.workers (in each Ray worker) runs this file first, and the
    # workers never need the HTTP client.
    if name in __all__:
        from lrsearch.service import client

        return getattr(client, name)
    raise AttributeError(f"module 'lrsearch' has no attribute {name!r}")
