"""Tools: plain Python functions the model can call.

``@tool`` turns a function (sync or async) into a ``Tool`` whose JSON schema comes from the
type hints and the docstring, through pydantic. Arguments are validated before the call; a
validation error or an exception goes back to the model as a tool error and the run goes on.
A parameter annotated ``RunContext`` receives the run's context and is hidden from the model.
"""

from kern.tools.core import Tool, ToolOutcome, as_tool, tool

__all__ = ["Tool", "ToolOutcome", "as_tool", "tool"]
