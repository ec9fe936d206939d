"""lrsearch workers."""
