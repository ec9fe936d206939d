"""lrsearch service: the FastAPI control plane, the job runner and the CLI."""

__version__ = "0.1.0"
