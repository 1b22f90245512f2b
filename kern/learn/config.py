"""Learning modes and the per-store configuration objects.

Configs are frozen pydantic models with ``extra="forbid"``: a misspelt option or a mode a
store does not support is a ``ConfigError`` at construction, never a silently ignored field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kern.errors import ConfigError
from kern.learn.schemas import (
    Decision,
    EntityFact,
    Learning,
    Memory,
    SessionContext,
    UserProfile,
)

__all__ = [
    "DecisionLogConfig",
    "EntityMemoryConfig",
    "LearnedKnowledgeConfig",
    "LearningMode",
    "SessionContextConfig",
    "StoreConfig",
    "UserMemoryConfig",
    "UserProfileConfig",
]


class LearningMode(StrEnum):
    ALWAYS = "always"
    """Extraction runs after each response, in the background: no tools, no extra turns."""
    AGENTIC = "agentic"
    """The agent gets the store's tools and decides what to save."""
    PROPOSE = "propose"
    """The agent's tools create proposals that a person approves before they count."""


class StoreConfig(BaseModel):
    """What every store config has: a mode, a content schema and a recall size."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    #: Modes the store supports; others are refused at construction.
    supported_modes: ClassVar[frozenset[LearningMode]] = frozenset(LearningMode)
    #: The schema every custom schema must subclass.
    base_schema: ClassVar[type[BaseModel]] = BaseModel

    mode: LearningMode = LearningMode.ALWAYS
    schema_: type[BaseModel] | None = Field(None, alias="schema")
    limit: int = Field(8, ge=0, le=100, description="Items recalled into the prompt per run")
    #: Extra guidance appended to the extraction and tool instructions for this store.
    instructions: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"{type(self).__name__}: {exc}") from exc

    @model_validator(mode="after")
    def _check(self) -> StoreConfig:
        if self.mode not in self.supported_modes:
            allowed = ", ".join(sorted(m.value for m in self.supported_modes))
            raise ValueError(f"mode {self.mode.value!r} is not supported here (use {allowed})")
        if self.schema_ is not None and not issubclass(self.schema_, self.base_schema):
            raise ValueError(f"schema must subclass {self.base_schema.__name__}")
        return self

    @property
    def schema(self) -> type[BaseModel]:  # type: ignore[override]
        return self.schema_ or self.base_schema


class _NamespacedConfig(StoreConfig):
    namespace: str = Field(
        "global",
        description='"user" (only the current user), "global" (everyone) or a group name',
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not value or not value.strip() or "/" in value:
            raise ValueError("namespace must be a non-empty name without '/'")
        return value


class UserProfileConfig(StoreConfig):
    base_schema: ClassVar[type[BaseModel]] = UserProfile


class UserMemoryConfig(StoreConfig):
    base_schema: ClassVar[type[BaseModel]] = Memory


class SessionContextConfig(StoreConfig):
    supported_modes: ClassVar[frozenset[LearningMode]] = frozenset(
        {LearningMode.ALWAYS, LearningMode.AGENTIC}
    )
    base_schema: ClassVar[type[BaseModel]] = SessionContext


class EntityMemoryConfig(_NamespacedConfig):
    base_schema: ClassVar[type[BaseModel]] = EntityFact


class LearnedKnowledgeConfig(_NamespacedConfig):
    base_schema: ClassVar[type[BaseModel]] = Learning


class DecisionLogConfig(_NamespacedConfig):
    supported_modes: ClassVar[frozenset[LearningMode]] = frozenset(
        {LearningMode.ALWAYS, LearningMode.AGENTIC}
    )
    base_schema: ClassVar[type[BaseModel]] = Decision
