"""What a run produces: the final ``RunOutput`` and the typed events of a streamed run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from kern.learn.items import Item
from kern.learn.turn import TurnLearning
from kern.models.base import Message, ToolCall, Usage

__all__ = [
    "ContentDelta",
    "RunCompleted",
    "RunEvent",
    "RunMetrics",
    "RunOutput",
    "RunStarted",
    "ToolCallCompleted",
    "ToolCallStarted",
]


@dataclass(slots=True)
class RunMetrics:
    """Counted while the run goes; durations in seconds."""

    model_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duration: float = 0.0
    model_duration: float = 0.0
    #: Time spent recalling learned context before the first model call.
    recall_duration: float = 0.0

    def add_model_call(self, usage: Usage, seconds: float) -> None:
        self.model_calls += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.model_duration += seconds

    def to_dict(self) -> dict[str, float | int]:
        return {
            "model_calls": self.model_calls,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "duration": self.duration,
            "model_duration": self.model_duration,
            "recall_duration": self.recall_duration,
        }


@dataclass(frozen=True, slots=True)
class RunOutput:
    run_id: str
    session_id: str
    user_id: str
    content: str | None
    #: The messages this run added: the user's message, assistant turns, tool results.
    messages: tuple[Message, ...]
    metrics: RunMetrics
    #: The learned context that was put in front of the model, as rendered (empty without
    #: learning); lets applications show what the answer was based on.
    recalled: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    #: The learnings the stores recalled for ``recalled`` (before a small ``context_budget``
    #: drops the least relevant), as items with their store and search ``score``: what an
    #: application shows without parsing the rendered context.
    recalled_items: tuple[Item[Any], ...] = ()
    #: What became of this turn's learning (``queued``, then ``done`` or ``failed`` with the
    #: error) once known; ``None`` without learning. ``output.learning.wait_for(timeout)`` waits.
    learning: TurnLearning | None = None


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class ContentDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolCallCompleted:
    call: ToolCall
    content: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class RunCompleted:
    output: RunOutput


RunEvent: TypeAlias = RunStarted | ContentDelta | ToolCallStarted | ToolCallCompleted | RunCompleted
