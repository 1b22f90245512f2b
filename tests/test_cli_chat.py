"""`kern chat` in a real pseudo-terminal, against a local fake OpenAI server."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
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
    if "long story" in json.dumps(request.body["input"]):
        return Reply(text="Once upon a time …", delay=20)  # stopped with Ctrl-C long before
    return Reply(text="Hello from the fake model!")


class Terminal:
    """A child process on its own pseudo-terminal, as a shell starts a foreground job.

    Used as a context manager: on leaving, a child still running is killed *and reaped*. A
    child left unreaped would make ``Popen.__del__`` warn whenever the garbage collector gets
    to it, and with warnings as errors that fails whichever later test is running then.
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        # The pty is the child's controlling terminal (a new session), as in a real terminal:
        # only then does Ctrl-C reach it as SIGINT.
        self.process = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_foreground_job,
        )
        os.close(slave)
        self.output = ""
        self.seen = 0  # output before this was matched by an earlier expect

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=30)
        finally:
            os.close(self.master)

    def expect(self, text: str, timeout: float = 30) -> None:
        """Wait for ``text`` after what earlier calls matched."""
        deadline = time.monotonic() + timeout
        while text not in self.output[self.seen :]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {text!r}; got:\n{self.output}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.output += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
        assert text in self.output[self.seen :], self.output
        self.seen = self.output.index(text, self.seen) + len(text)

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\r").encode())

    def press(self, key: str) -> None:
        """A control key: the terminal turns Ctrl-C into SIGINT and Ctrl-D into end of input."""
        os.write(self.master, key.encode())


def _foreground_job() -> None:
    """In the child, before exec: what a shell gives a job it runs in a terminal.

    The pty becomes the controlling terminal, and SIGINT is delivered with its default
    action, whatever this test process inherited. A test run started in the background of a
    non-interactive shell (``bash -c 'pytest … &'``) has SIGINT ignored, and an ignored signal
    stays ignored across exec: Python would then install no KeyboardInterrupt handler and
    Ctrl-C would do nothing in the chat.
    """
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def chat_env(server: FakeServer) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_BASE_URL": server.url + "/v1",
        "OPENAI_API_KEY": "sk-test",
        "COLUMNS": "120",
        "TERM": "xterm",
    }


def chat_args(db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kern.cli",
        "chat",
        "--model",
        "openai:fake",
        "--db",
        str(db),
        "--user-id",
        "alice",
    ]


def test_chat_repl_learns_and_shows_memory_and_profile(tmp_path: Path) -> None:
    with (
        FakeServer(ResponsesProtocol(), responder) as server,
        Terminal(chat_args(tmp_path / "chat.db"), chat_env(server)) as term,
    ):
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
        with Terminal(
            [
                sys.executable,
                "-m",
                "kern.cli",
                "chat",
                "--model",
                "openai-chat:local-model",
                "--base-url",
                f"{server.url}/v1",
                "--db",
                str(tmp_path / "chat.db"),
            ],
            env,
        ) as term:
            term.expect("you ›")
            term.send("Hi, I'm Alice and I keep bees")
            term.expect("Hello from the compatible server!")
            term.expect("learning from this turn failed:")
            term.expect("you ›")
            term.send("/quit")
            assert term.process.wait(timeout=30) == 0
    warning = term.output.split("learning from this turn failed:")[1].split("you ›")[0]
    assert "ModelOutputError" in warning
    keys = {
        v for r in server.requests for k, v in r.headers.items() if k.lower() == "authorization"
    }
    assert keys == {"Bearer none"}


def test_ctrl_c_reaches_the_child_even_if_this_process_ignores_sigint() -> None:
    """A suite started in the background of a non-interactive shell runs with SIGINT ignored
    (the Ctrl-C test below failed so, every time); the terminal still delivers Ctrl-C."""
    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sleeper = "import time; print('ready', flush=True); time.sleep(60)"
        term = Terminal([sys.executable, "-c", sleeper], dict(os.environ))
    finally:
        signal.signal(signal.SIGINT, inherited)
    with term:
        term.expect("ready")  # Python has installed its SIGINT handler
        term.press("\x03")
        term.expect("KeyboardInterrupt")
        assert term.process.wait(timeout=30) != 0


def test_chat_echoes_once_and_ctrl_c_stops_an_answer_not_the_chat(tmp_path: Path) -> None:
    with (
        FakeServer(ResponsesProtocol(), responder) as server,
        Terminal(chat_args(tmp_path / "chat.db"), chat_env(server)) as term,
    ):
        term.expect("you ›")
        term.send("Hi, I'm Alice and I keep bees")
        term.expect("Hello from the fake model!")
        term.expect("you ›")
        # The terminal echoes the line as it is typed; the chat does not print it again.
        assert term.output.count("I keep bees") == 1, term.output
        term.send("Tell me a long story")
        term.expect("agent ›")
        term.press("\x03")
        term.expect("stopped")
        term.expect("you ›")
        term.send("Are you still there?")
        term.expect("Hello from the fake model!")
        term.expect("you ›")
        term.press("\x03")  # at the prompt: leave, with a word
        term.expect("bye")
        assert term.process.wait(timeout=30) == 0


def test_chat_leaves_on_ctrl_d(tmp_path: Path) -> None:
    with (
        FakeServer(ResponsesProtocol(), responder) as server,
        Terminal(chat_args(tmp_path / "chat.db"), chat_env(server)) as term,
    ):
        term.expect("you ›")
        term.press("\x04")
        term.expect("bye")
        assert term.process.wait(timeout=30) == 0
