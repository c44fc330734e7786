"""The REST API of the knowledge base, under /api/v1/."""
