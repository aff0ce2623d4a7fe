"""Models: OpenAI's list and retrieve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from unclip.service.auth import Principal, authenticate
from unclip.service.engines import ALIASES
from unclip.service.routers.deps import services

router = APIRouter(prefix="/v1/models", tags=["models"])


def _model(sv: Any, name: str) -> dict[str, Any]:
    target = sv.registry.resolve(name)
    return {
        "id": name,
        "object": "model",
        "created": sv.registry.created(target),
        "owned_by": "unclip",
        "shutdown_date": None,
        "examples": sv.registry.examples(target),  # unclip: prompts measured to draw well (`unclip eval examples`)
    }


@router.get("", summary="List models (OpenAI listModels): dall-e-2 (the default) and each installed model")
def list_models(request: Request, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    sv = services(request)
    return {"object": "list", "data": [_model(sv, n) for n in [*ALIASES, *sv.registry.names()]]}


@router.get("/{model}", summary="Retrieve a model (OpenAI retrieveModel)")
def get_model(request: Request, model: str, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    return _model(services(request), model)
