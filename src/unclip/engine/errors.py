"""Errors the engine raises for bad input and for cancelled jobs."""

from __future__ import annotations


class InvalidInput(ValueError):
    """A request the engine cannot serve; `param` names the offending argument."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class Cancelled(Exception):
    """The job's cancel event was set; no images were produced."""
