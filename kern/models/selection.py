"""A model from a short string, as the command line (``--model``) and config files name one.

| String | Model |
|---|---|
| ``local`` / ``local:PATH`` | ``LlamaCpp``: the bundled SmolLM2 GGUF, or the GGUF file at PATH |
| ``openai:ID`` | ``OpenAIResponses`` (OpenAI's Responses API) |
| ``openai-chat:ID`` | ``OpenAIChat``: Chat Completions, OpenAI or any compatible server |
| ``anthropic:ID`` | ``Anthropic`` |

``base_url`` points an OpenAI or Anthropic model at another server (a compatible server needs
``openai-chat:ID``; its API key comes from ``OPENAI_API_KEY``, and a local server that checks
none gets a placeholder).
"""

from __future__ import annotations

import os

from kern.errors import ConfigError
from kern.models.base import Model

__all__ = ["MODEL_CHOICES", "model_from_string", "pick_model"]

#: How the accepted strings are described in help texts and errors.
MODEL_CHOICES = "local[:PATH], openai:ID, openai-chat:ID or anthropic:ID"

#: The model chosen when none is named and OPENAI_API_KEY is set.
DEFAULT_OPENAI = "openai:gpt-5-mini"

# Servers on the user's own machine rarely check keys; the SDK still insists on one.
_PLACEHOLDER_KEY = "none"


def model_from_string(spec: str, *, base_url: str | None = None) -> Model:
    """The model ``spec`` names (see the module docstring); ``ConfigError`` for anything else."""
    provider, _, model_id = spec.partition(":")
    if provider == "local":
        if base_url is not None:
            raise ConfigError(
                "--base-url is for a model server; `local` runs a GGUF file in-process. "
                "For a local server use openai-chat:ID with --base-url"
            )
        from kern.models.llamacpp import LlamaCpp

        # Greedy: SmolLM2-135M is most coherent without sampling noise, and LlamaCpp bounds
        # every JSON string, so a greedy loop inside one cannot run away. Free text is where a
        # 135M model rambles: 120 tokens and a repeat penalty keep a reply to a few sentences.
        return LlamaCpp(
            model_path=model_id or None,
            seed=7,
            temperature=0.0,
            max_tokens=120,
            repeat_penalty=1.3,
        )
    if not model_id:
        raise ConfigError(f"model {spec!r} names no model id; use {MODEL_CHOICES}")
    if provider in ("openai", "openai-chat"):
        from kern.models.openai import OpenAIChat, OpenAIResponses

        api_key = None
        if base_url is not None and not os.environ.get("OPENAI_API_KEY"):
            api_key = _PLACEHOLDER_KEY
        if provider == "openai":
            return OpenAIResponses(id=model_id, base_url=base_url, api_key=api_key)
        return OpenAIChat(id=model_id, base_url=base_url, api_key=api_key)
    if provider == "anthropic":
        from kern.models.anthropic import Anthropic

        return Anthropic(id=model_id, base_url=base_url)
    raise ConfigError(f"unknown model {spec!r}; use {MODEL_CHOICES}")


def pick_model(spec: str | None = None, *, base_url: str | None = None) -> Model:
    """``spec`` if given; else OpenAI when ``OPENAI_API_KEY`` is set, else the local model."""
    if spec is None:
        spec = DEFAULT_OPENAI if os.environ.get("OPENAI_API_KEY") else "local"
    return model_from_string(spec, base_url=base_url)
