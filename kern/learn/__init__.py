"""Learning Stores: what an agent remembers about users and the world, and how it learns.

``Agent(learning=True)`` enables the user profile, user memory and session context in always
mode; ``Agent(learning=LearningMachine(...))`` chooses stores, modes, namespaces and schemas.
"""

from kern.learn.config import (
    DecisionLogConfig,
    EntityMemoryConfig,
    LearnedKnowledgeConfig,
    LearningMode,
    SessionContextConfig,
    StoreConfig,
    UserMemoryConfig,
    UserProfileConfig,
)
from kern.learn.curator import CurationReport, Curator
from kern.learn.items import Item
from kern.learn.machine import LearningMachine, RecallResult
from kern.learn.proposals import Proposals
from kern.learn.schemas import (
    Decision,
    EntityEvent,
    EntityFact,
    EntityRelation,
    Learning,
    Memory,
    SessionContext,
    UserProfile,
)
from kern.learn.stores import LearningStore, Recalled, Turn

__all__ = [
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
]
