"""Thin FastAPI routers over the service layer."""
