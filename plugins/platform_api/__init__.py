"""FastAPI app of the platform API: thin routes over include.access (docs/access.md)."""
