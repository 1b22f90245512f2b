"""The content schemas of the built-in stores.

Subclass one and add typed fields with descriptions to customise a store: the fields flow
into the extraction prompt and its output schema, the store's tool signatures, validation,
storage, the REST API and the UI with no other code::

    class CustomerProfile(UserProfile):
        plan: Literal["free", "pro", "enterprise"] | None = Field(None, description="Billing plan")

    LearningMachine(user_profile=UserProfileConfig(schema=CustomerProfile))
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Decision",
    "EntityEvent",
    "EntityFact",
    "EntityRelation",
    "Learning",
    "Memory",
    "SessionContext",
    "UserProfile",
]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserProfile(_Schema):
    """Structured facts about the user; every field optional, one stored row per field."""

    name: str | None = Field(None, description="The user's full name")
    preferred_name: str | None = Field(None, description="What the user likes to be called")
    role: str | None = Field(None, description="Job title or role")
    company: str | None = Field(None, description="Employer or organisation")
    location: str | None = Field(None, description="City or country the user is in")
    language: str | None = Field(None, description="Language for answers, e.g. English")
    timezone: str | None = Field(None, description="IANA time zone, e.g. Europe/Paris")
    communication_style: str | None = Field(
        None, description="How the user wants answers: length, tone, format"
    )


class Memory(_Schema):
    """One observation about the user, in a short self-contained sentence."""

    content: str = Field(description="A short, self-contained statement about the user")


class SessionContext(_Schema):
    """Where the current session stands; one row per session, rewritten as it moves on."""

    summary: str | None = Field(None, description="What the session is about, in 1-3 sentences")
    goal: str | None = Field(None, description="What the user wants to achieve in this session")
    plan: list[str] = Field(default_factory=list, description="Steps agreed to reach the goal")
    progress: list[str] = Field(default_factory=list, description="Steps done so far")


class EntityFact(_Schema):
    """A durable fact about an external thing (company, project, person, product)."""

    entity: str = Field(description="The entity's name, e.g. 'Netflix' or 'Project Atlas'")
    entity_type: str | None = Field(None, description="company, project, person, product …")
    fact: str = Field(description="One fact about the entity")


class EntityEvent(_Schema):
    """Something that happened to an entity, with its date when known."""

    entity: str = Field(description="The entity's name")
    event: str = Field(description="What happened")
    date: str | None = Field(None, description="When it happened (ISO date if known)")


class EntityRelation(_Schema):
    """A directed relation between two entities, e.g. (Alice, works_at, Netflix)."""

    subject: str = Field(description="The first entity")
    relation: str = Field(description="The relation, e.g. works_at, owns, depends_on")
    object: str = Field(description="The second entity")


class Learning(_Schema):
    """An insight that transfers to other users and conversations."""

    title: str | None = Field(None, description="A short title")
    learning: str = Field(description="The insight, stated so it helps in a future conversation")
    tags: list[str] = Field(default_factory=list, description="A few topic tags")


class Decision(_Schema):
    """A decision the agent made, why, and (later) how it turned out."""

    decision: str = Field(description="What was decided")
    reasoning: str = Field(description="Why")
    alternatives: list[str] = Field(default_factory=list, description="Options not chosen")
    confidence: float | None = Field(None, ge=0, le=1, description="Confidence from 0 to 1")
    outcome: str | None = Field(None, description="How it turned out, once known")
