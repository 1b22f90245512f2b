"""The agent: a model, its tools, persistent sessions and learning."""

from kern.agent.agent import Agent
from kern.agent.output import (
    ContentDelta,
    RunCompleted,
    RunEvent,
    RunMetrics,
    RunOutput,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from kern.context import RunContext

__all__ = [
    "Agent",
    "ContentDelta",
    "RunCompleted",
    "RunContext",
    "RunEvent",
    "RunMetrics",
    "RunOutput",
    "RunStarted",
    "ToolCallCompleted",
    "ToolCallStarted",
]
