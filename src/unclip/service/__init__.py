"""The HTTP server: an OpenAI-compatible Images API plus unclip's own endpoints.

`create_app(settings)` in `unclip.service.app` builds the FastAPI application.
"""
