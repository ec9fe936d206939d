"""lrsearch migrations."""
