from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from kern._sync import call_any
from kern.context import RunContext
from kern.errors import ConfigError, NotFoundError, ToolError
from kern.models.base import ToolDefinition

__all__ = [
    "Tool",
    "ToolFunction",
    "ToolOutcome",
    "as_tool",
    "parse_docstring",
    "render_result",
    "tool",
]

ToolFunction = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What goes back to the model for one tool call."""

    content: str
    is_error: bool = False


class Tool:
    """A callable the model may invoke, with its schema and validation."""

    def __init__(
        self,
        function: ToolFunction,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ConfigError(f"tool name {self.name!r} must match [A-Za-z0-9_-]{{1,64}}")
        summary, param_docs = parse_docstring(inspect.getdoc(function) or "")
        self.description = description or summary or self.name
        self._context_param, self._args_model = _arguments_model(function, self.name, param_docs)
        #: Whether the function takes the validated arguments model whole (``for_model``).
        self._takes_model = False
        self.parameters: dict[str, Any] = self._args_model.model_json_schema()
        self.parameters.pop("title", None)

    @classmethod
    def for_model(
        cls,
        function: Callable[[RunContext, Any], Any],
        *,
        name: str,
        description: str,
        arguments: type[BaseModel],
    ) -> Tool:
        """A tool whose arguments are a pydantic model, e.g. a store's (custom) schema.

        ``function(ctx, arguments)`` receives the validated model instance.
        """
        self = cls.__new__(cls)
        self.function = function
        self.name = name
        self.description = description
        self._context_param = "ctx"
        self._args_model = arguments
        self._takes_model = True
        self.parameters = arguments.model_json_schema()
        self.parameters.pop("title", None)
        return self

    @property
    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self.parameters)

    async def call(self, arguments: str, ctx: RunContext) -> ToolOutcome:
        """Validate ``arguments`` (raw JSON from the model), call, and render the result.

        Never raises for a bad call: the model gets the error text and can correct itself.
        """
        try:
            parsed = self._args_model.model_validate_json(arguments or "{}")
        except ValidationError as exc:
            return ToolOutcome(_validation_message(exc), is_error=True)
        try:
            if self._takes_model:
                result = await call_any(self.function, ctx, parsed)
            else:
                kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
                if self._context_param:
                    kwargs[self._context_param] = ctx
                result = await call_any(self.function, **kwargs)
        except (ToolError, NotFoundError) as exc:
            return ToolOutcome(str(exc), is_error=True)
        except Exception as exc:
            return ToolOutcome(f"{type(exc).__name__}: {exc}", is_error=True)
        return ToolOutcome(render_result(result))

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(function: ToolFunction, /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[ToolFunction], Tool]: ...
def tool(
    function: ToolFunction | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[ToolFunction], Tool]:
    """Decorate a function as a tool: ``@tool`` or ``@tool(name=..., description=...)``."""
    if function is not None:
        return Tool(function)

    def decorate(fn: ToolFunction) -> Tool:
        return Tool(fn, name=name, description=description)

    return decorate


def as_tool(value: Tool | ToolFunction) -> Tool:
    """Accept a ``Tool`` or a plain function wherever tools are configured."""
    if isinstance(value, Tool):
        return value
    if callable(value):
        return Tool(value)
    raise ConfigError(f"not a tool or a function: {value!r}")


def render_result(result: Any) -> str:
    """Tool results reach the model as text: strings as-is, everything else as JSON."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, default=str, ensure_ascii=False)


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        problems.append(f"{where}: {error['msg']}")
    return "Invalid arguments: " + "; ".join(problems) + ". Fix them and call the tool again."


def _arguments_model(
    function: ToolFunction, tool_name: str, param_docs: dict[str, str]
) -> tuple[str | None, type[BaseModel]]:
    """Build a pydantic model of the function's parameters; find the RunContext one."""
    try:
        hints = get_type_hints(function)
    except NameError as exc:
        raise ConfigError(f"tool {tool_name!r}: cannot resolve a type hint: {exc}") from exc
    context_param: str | None = None
    fields: dict[str, Any] = {}
    for param in inspect.signature(function).parameters.values():
        annotation = hints.get(param.name, Any)
        if annotation is RunContext:
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, Field(default, description=param_docs.get(param.name)))
    model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return context_param, cast(type[BaseModel], model)


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_GOOGLE_PARAM = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into (description, {param: description}).

    Understands Google style (``Args:`` with indented ``name: text``) and Sphinx style
    (``:param name: text``); anything else is description.
    """
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        if match := _SECTION.match(line.strip()):
            section, current = match.group(1), None
            continue
        if match := _SPHINX_PARAM.match(line.strip()):
            current = match.group(1)
            params[current] = match.group(2).strip()
            section = "Args"
            continue
        if section in ("Args", "Arguments", "Parameters"):
            if match := _GOOGLE_PARAM.match(line):
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
            continue
        if section is None:
            description.append(line)
    return "\n".join(description).strip(), params
