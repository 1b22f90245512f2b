"""kern's public surface, pinned: the names each user-facing module exports, written out here.

In the style of httpx's ``tests/test_exported_members.py``: adding, renaming or removing a
public name is a deliberate change to this file, never a side effect. Every other module whose
name has no ``_`` part is public too and declares ``__all__``; private modules start with ``_``.
"""

from __future__ import annotations
import __future__

import importlib
import pkgutil
from types import ModuleType

import pytest

import kern

# The modules users import (README, docs/, DESIGN.md) and exactly what each exports.
PUBLIC_API: dict[str, list[str]] = {
    "kern": [
        "DISTRIBUTION",
        "__version__",
    ],
    "kern.agent": [
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
    ],
    "kern.context": [
        "DEFAULT_USER_ID",
        "RunContext",
    ],
    "kern.db": [
        "open_db",
    ],
    "kern.db.base": [
        "Close",
        "Create",
        "Db",
        "HistoryAction",
        "HistoryRecord",
        "JobRecord",
        "JobStatus",
        "LearningDb",
        "LearningFilter",
        "LearningRecord",
        "LearningStatus",
        "Put",
        "RankingRow",
        "RunRecord",
        "SearchHit",
        "SessionRecord",
        "SetStatus",
        "Supersede",
        "Update",
        "WriteOp",
    ],
    "kern.db.postgres": [
        "PostgresDb",
        "create_postgres_engine",
    ],
    "kern.db.sqlite": [
        "SqliteDb",
        "create_sqlite_engine",
    ],
    "kern.errors": [
        "ConfigError",
        "ConflictError",
        "InvalidArgumentError",
        "JobLostError",
        "KernError",
        "MissingDependencyError",
        "ModelError",
        "ModelHTTPError",
        "ModelOutputError",
        "ModelTimeoutError",
        "NotFoundError",
        "RunLimitError",
        "StorageError",
        "TooLargeError",
        "ToolError",
        "short_error",
    ],
    "kern.limits": [
        "EXTRACTION_INPUT_CHARS",
        "EXTRACTION_ITEM_CHARS",
        "MAX_CONTENT_CHARS",
        "MAX_ID_CHARS",
        "MAX_IMPORT_BYTES",
        "MAX_MESSAGE_CHARS",
        "MAX_METADATA_CHARS",
        "MAX_PAGE",
        "MAX_QUERY_CHARS",
        "MAX_QUERY_TERMS",
        "MAX_REQUEST_BYTES",
        "check_aware",
        "check_content",
        "check_count",
        "check_id",
        "check_message",
        "check_metadata",
        "check_text",
        "cut",
    ],
    "kern.learn": [
        "CurationReport",
        "Curator",
        "Decision",
        "DecisionLogConfig",
        "EntityEvent",
        "EntityFact",
        "EntityMemoryConfig",
        "EntityRelation",
        "Item",
        "LearnedKnowledgeConfig",
        "Learning",
        "LearningMachine",
        "LearningMode",
        "LearningStore",
        "Memory",
        "Proposals",
        "RecallResult",
        "Recalled",
        "SessionContext",
        "SessionContextConfig",
        "StoreConfig",
        "Turn",
        "UserMemoryConfig",
        "UserProfile",
        "UserProfileConfig",
    ],
    "kern.learn.backend": [
        "Apply",
        "Flow",
        "Get",
        "LearningBackend",
        "Now",
        "Read",
        "Search",
    ],
    "kern.learn.scope": [
        "agent_scope",
        "namespace_scope",
        "session_scope",
        "user_scope",
    ],
    "kern.learn.stores": [
        "DecisionLogStore",
        "EntityMemoryStore",
        "ExtractionView",
        "LearnedKnowledgeStore",
        "LearningStore",
        "ListStore",
        "Recalled",
        "SessionContextStore",
        "Store",
        "Turn",
        "UserMemoryStore",
        "UserProfileStore",
    ],
    "kern.models.anthropic": [
        "Anthropic",
    ],
    "kern.models.base": [
        "AssistantMessage",
        "Message",
        "Model",
        "ModelRequest",
        "ModelResponse",
        "ModelStreamEvent",
        "OutputSchema",
        "TextDelta",
        "ToolCall",
        "ToolDefinition",
        "ToolResultMessage",
        "Usage",
        "UserMessage",
        "message_from_dict",
        "message_to_dict",
    ],
    "kern.models.llamacpp": [
        "LlamaCpp",
        "default_model_path",
    ],
    "kern.models.openai": [
        "OpenAIChat",
        "OpenAIResponses",
        "TokenLimitParam",
    ],
    "kern.models.selection": [
        "MODEL_CHOICES",
        "model_from_string",
        "pick_model",
    ],
    "kern.models.structured": [
        "MODES",
        "StructuredMode",
        "forget_modes",
        "json_text",
        "modes_to_try",
        "remember_mode",
        "schema_instructions",
    ],
    "kern.models.testing": [
        "FunctionModel",
        "TestModel",
        "sample_from_schema",
    ],
    "kern.search": [
        "Embedder",
        "HashEmbedder",
        "LocalEmbedder",
        "OpenAIEmbedder",
        "RankingConfig",
        "STOPWORDS",
        "TimeRange",
        "Vector",
        "cosine_top_k",
        "fts5_match",
        "query_terms",
        "rank",
        "time_ranges",
        "tsquery",
    ],
    "kern.server": [
        "Principal",
        "TokenConfig",
        "create_app",
        "load_app",
        "serve",
    ],
    "kern.tools": [
        "Tool",
        "ToolOutcome",
        "as_tool",
        "tool",
    ],
}


_FUTURE_FEATURES = tuple(getattr(__future__, name) for name in __future__.all_feature_names)


def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    names = ["kern"]
    for info in pkgutil.walk_packages(kern.__path__, prefix="kern."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def public_names(module: ModuleType) -> set[str]:
    """Names a module offers without ``__all__``: not private, not a submodule, not a
    ``from __future__`` feature."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType | __future__._Feature)
    }


@pytest.mark.parametrize("name", sorted(PUBLIC_API))
def test_public_api_is_pinned(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == PUBLIC_API[name]


@pytest.mark.parametrize("name", public_modules())
def test_every_public_module_declares_what_it_exports(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        # Only a module with nothing to offer may go without (an empty package).
        assert public_names(module) == set(), f"{name} has public names but no __all__"
        return
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [export for export in exported if not hasattr(module, export)]
    assert missing == [], f"{name}.__all__ names what it does not define: {missing}"


def test_the_pinned_modules_are_public_modules() -> None:
    assert set(PUBLIC_API) <= set(public_modules())
