"""Models named by strings (``--model`` and ``--base-url``): ``kern.models.selection``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kern.cli import app
from kern.errors import ConfigError
from kern.models.anthropic import Anthropic
from kern.models.openai import OpenAIChat, OpenAIResponses
from kern.models.selection import model_from_string, pick_model


def test_openai_chat_with_a_base_url_needs_no_key() -> None:
    model = model_from_string("openai-chat:smollm2", base_url="http://127.0.0.1:8000/v1")

    assert isinstance(model, OpenAIChat)
    assert model.id == "smollm2"
    assert model._base_url == "http://127.0.0.1:8000/v1"
    assert model._api_key == "none"  # a placeholder: local servers rarely check keys


def test_a_key_in_the_environment_is_used_with_a_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")

    model = model_from_string("openai-chat:m", base_url="http://127.0.0.1:8000/v1")

    assert isinstance(model, OpenAIChat) and model._api_key is None  # the SDK reads the env


def test_each_provider_string() -> None:
    assert isinstance(model_from_string("openai:gpt-5.2"), OpenAIResponses)
    assert isinstance(model_from_string("openai-chat:gpt-5-mini"), OpenAIChat)
    assert isinstance(model_from_string("anthropic:claude-test"), Anthropic)
    claude = model_from_string("anthropic:claude-test", base_url="http://127.0.0.1:9/")
    assert isinstance(claude, Anthropic) and claude.base_url == "http://127.0.0.1:9/"


def test_local_with_a_path(tmp_path: Path) -> None:
    from kern.models.llamacpp import LlamaCpp

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")  # loaded lazily: construction only checks the file exists

    model = model_from_string(f"local:{gguf}")

    assert isinstance(model, LlamaCpp) and model.model_path == str(gguf)
    with pytest.raises(ConfigError, match="no GGUF model file"):
        model_from_string(f"local:{tmp_path / 'missing.gguf'}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gemini:pro", "unknown model"),
        ("openai", "names no model id"),
        ("openai-chat:", "names no model id"),
    ],
)
def test_bad_strings_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_from_string(spec)


def test_local_refuses_a_base_url() -> None:
    with pytest.raises(ConfigError, match="openai-chat:ID"):
        model_from_string("local", base_url="http://127.0.0.1:8000/v1")


def test_pick_model_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    chosen = pick_model()
    assert isinstance(chosen, OpenAIResponses) and chosen.id == "gpt-5-mini"


@pytest.mark.parametrize("command", ["chat", "demo"])
def test_commands_that_take_a_model_document_the_strings_and_base_url(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "--base-url" in result.output
    assert "openai-chat:ID" in result.output and "local[:PATH]" in result.output


def test_an_unknown_model_on_the_command_line_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--model", "gemini:pro", "--db", str(tmp_path / "d.db")]
    )

    assert result.exit_code != 0
    assert "unknown model 'gemini:pro'" in str(result.exception) + result.output
