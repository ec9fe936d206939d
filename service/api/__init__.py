"""REST routers, one per resource, all under API_PREFIX."""

API_PREFIX = "/api/v1"
