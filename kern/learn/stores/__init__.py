"""The built-in Learning Stores, one module each."""

from kern.learn.stores.base import ExtractionView, LearningStore, Recalled, Store, Turn
from kern.learn.stores.decision_log import DecisionLogStore
from kern.learn.stores.entity_memory import EntityMemoryStore
from kern.learn.stores.keyed import SessionContextStore, UserProfileStore
from kern.learn.stores.learned_knowledge import LearnedKnowledgeStore
from kern.learn.stores.listing import ListStore
from kern.learn.stores.user_memory import UserMemoryStore

__all__ = [
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
]
