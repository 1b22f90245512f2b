"""The extraction call: one structured-output model request for every always-mode store.

Each store contributes its part (``extraction_view``: its output type, guidance and what is
stored now); the answer is validated, with one repair round, and each store turns its part into
write operations (``extraction_writes``). The backend embeds all of them in one batch and
applies them in one transaction — with the job's completion, when a job is given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from kern.context import RunContext
from kern.db.base import JobRecord, WriteOp
from kern.errors import ModelOutputError
from kern.learn.backend import LearningBackend
from kern.learn.prompts import extraction_instructions, extraction_prompt
from kern.learn.stores.base import ExtractionView, Store, Turn
from kern.models.base import AssistantMessage, Model, ModelRequest, OutputSchema, UserMessage

__all__ = ["extract"]


async def extract(
    backend: LearningBackend,
    model: Model,
    ctx: RunContext,
    turn: Turn,
    stores: Sequence[Store[Any]],
    *,
    job: JobRecord | None = None,
) -> list[WriteOp]:
    """One structured-output call for ``stores``; apply the result in one transaction."""
    views: list[tuple[Store[Any], ExtractionView]] = []
    for store in stores:
        view = await backend.run(store.extraction_view(ctx, turn))
        if view is not None:
            views.append((store, view))
    writes: list[WriteOp] = []
    if views:
        answer = await ask(model, turn, [v for _, v in views])
        for store, view in views:
            value = getattr(answer, view.key)
            writes.extend(await backend.run(store.extraction_writes(value, view, ctx)))
    if writes or job is not None:
        # One forbidden operation (the shared-namespace policy) must not fail the turn's
        # learning: it is dropped with a warning (``strict=False``).
        await backend.apply(
            writes,
            run_id=ctx.run_id or None,
            actor="extraction",
            turn_of=ctx.user_id or None,
            job=job,
            strict=False,
        )
    return writes


async def ask(model: Model, turn: Turn, views: list[ExtractionView]) -> BaseModel:
    """The model call, with one repair retry for output that does not validate."""
    output_model, schema = _extraction_schema(tuple((v.key, v.output) for v in views))
    prompt = extraction_prompt(
        turn.user, turn.assistant, [(f"Stored {v.key}", v.data) for v in views], date=turn.date
    )
    messages: list[UserMessage | AssistantMessage] = [UserMessage(prompt)]
    instructions = extraction_instructions(
        [(v.key, v.guidance) for v in views], dated_items=any(v.dated_items for v in views)
    )
    for attempt in (1, 2):
        response = await model.request(
            ModelRequest(messages=messages, instructions=instructions, output_schema=schema)
        )
        try:
            return output_model.model_validate(schema.parse(response.text, provider=model.name))
        except (ValidationError, ModelOutputError) as exc:
            if attempt == 2:
                raise ModelOutputError(
                    f"extraction output invalid after a repair attempt: {_short(exc)}",
                    provider=model.name,
                ) from exc
            messages += [
                AssistantMessage(response.text),
                UserMessage(
                    f"That answer is invalid: {_short(exc)}. Return only JSON matching the schema."
                ),
            ]
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=64)
def _extraction_schema(fields: tuple[tuple[str, Any], ...]) -> tuple[type[BaseModel], OutputSchema]:
    """The combined output model and its JSON schema, built once per set of store outputs.

    Titles are dropped from the schema: they repeat the field names and were most of the
    schema's tokens; descriptions stay, they guide the model.
    """
    definitions: dict[str, Any] = {key: (output, None) for key, output in fields}
    model: type[BaseModel] = create_model("Extraction", **definitions)
    return model, OutputSchema("extraction", _without_titles(model.model_json_schema()))


def _without_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: _without_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text[:500]
