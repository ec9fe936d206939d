"""lrsearch service."""
