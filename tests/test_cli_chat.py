"""`kern chat` in a real pseudo-terminal, against a local fake OpenAI server."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.fakes.openai import ChatProtocol, ResponsesProtocol
from tests.fakes.server import FakeServer, Recorded, Reply


def responder(request: Recorded) -> Reply:
    if request.body.get("text", {}).get("format", {}).get("type") == "json_schema":
        said = json.dumps(request.body["input"])
        if "Alice" in said:
            return Reply(
                text=json.dumps(
                    {
                        "user_profile": {"name": "Alice"},
                        "user_memory": {"add": [{"content": "Alice keeps bees."}]},
                    }
                )
            )
        return Reply(text="{}")
    return Reply(text="Hello from the fake model!")


class Terminal:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.output = ""

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {text!r}; got:\n{self.output}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.output += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
        assert text in self.output, self.output

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\r").encode())


def test_chat_repl_learns_and_shows_memory_and_profile(tmp_path: Path) -> None:
    with FakeServer(ResponsesProtocol(), responder) as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.url + "/v1",
            "OPENAI_API_KEY": "sk-test",
            "COLUMNS": "120",
            "TERM": "xterm",
        }
        term = Terminal(
            [
                sys.executable,
                "-m",
                "kern.cli",
                "chat",
                "--model",
                "openai:fake",
                "--db-file",
                str(tmp_path / "chat.db"),
                "--user-id",
                "alice",
            ],
            env,
        )
        try:
            term.expect("you ›")
            term.send("Hi, I'm Alice and I keep bees")
            term.expect("Hello from the fake model!")
            term.expect("you ›")
            term.send("/profile")
            term.expect("name: Alice")
            term.send("/memory")
            term.expect("Alice keeps bees.")
            term.send("/proposals")
            term.expect("0 pending proposal(s)")
            term.send("/forget")
            term.expect("forgot everything about alice")
            term.send("/memory")
            term.expect("0 memories")
            term.send("/quit")
            assert term.process.wait(timeout=30) == 0
        finally:
            if term.process.poll() is None:
                term.process.kill()
            os.close(term.master)


def test_chat_on_a_compatible_server_warns_after_a_turn_whose_learning_failed(
    tmp_path: Path,
) -> None:
    """``--model openai-chat:ID --base-url URL`` with no key; a server on which every
    structured-output mode fails: the answer is shown, then one line saying learning failed."""

    def no_json(request: Recorded) -> Reply:
        body = request.body
        if body.get("response_format") or body.get("tools"):
            return Reply(status=400, text="not supported here")
        if "JSON schema" in json.dumps(body):
            return Reply(text="Sorry, no JSON today.")
        return Reply(text="Hello from the compatible server!")

    with FakeServer(ChatProtocol(), no_json) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update({"COLUMNS": "200", "TERM": "xterm"})
        term = Terminal(
            [
                sys.executable,
                "-m",
                "kern.cli",
                "chat",
                "--model",
                "openai-chat:local-model",
                "--base-url",
                f"{server.url}/v1",
                "--db-file",
                str(tmp_path / "chat.db"),
            ],
            env,
        )
        try:
            term.expect("you ›")
            term.send("Hi, I'm Alice and I keep bees")
            term.expect("Hello from the compatible server!")
            term.expect("learning from this turn failed:")
            term.expect("you ›")
            term.send("/quit")
            assert term.process.wait(timeout=30) == 0
        finally:
            if term.process.poll() is None:
                term.process.kill()
            os.close(term.master)
    warning = term.output.split("learning from this turn failed:")[1].split("you ›")[0]
    assert "ModelOutputError" in warning
    keys = {
        v for r in server.requests for k, v in r.headers.items() if k.lower() == "authorization"
    }
    assert keys == {"Bearer none"}
