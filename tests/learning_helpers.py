"""Shared scaffolding for learning tests: scripted extraction answers over FunctionModel."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kern.models.base import ModelRequest, ModelResponse, UserMessage


def is_extraction(request: ModelRequest) -> bool:
    return request.output_schema is not None and request.output_schema.name == "extraction"


def extraction_model(
    answer: Callable[[ModelRequest], str] | str = "ok",
    extract: Callable[[ModelRequest], dict[str, Any]] | dict[str, Any] | None = None,
) -> Callable[[ModelRequest], ModelResponse | str]:
    """A FunctionModel function: extraction requests get ``extract``, others ``answer``."""

    def respond(request: ModelRequest) -> ModelResponse | str:
        if is_extraction(request):
            value = extract(request) if callable(extract) else (extract or {})
            return ModelResponse(json.dumps(value))
        return answer(request) if callable(answer) else answer

    return respond


def prompt_text(request: ModelRequest) -> str:
    return "\n".join(m.content for m in request.messages if isinstance(m, UserMessage))
