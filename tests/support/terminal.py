"""A command on a pseudo-terminal, as a person types into it (vdi-connect's
questions, vdi-broker's password prompt)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select as io_select
import signal


def ctrl_c_as_at_a_terminal() -> None:
    """In the child, before exec: Ctrl-C (SIGINT) as a terminal delivers it.

    A test run started in the background (`cmd &` in a script, nohup) ignores
    SIGINT, and an ignored signal stays ignored across fork and exec. Python
    then installs no KeyboardInterrupt handler, so vdi-connect, which honours
    that as programs should, kept running after the tests' Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A command on a pseudo-terminal, as a person runs it: getpass reads the
    password from it with echo off, and questions are asked on it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the command
            try:
                ctrl_c_as_at_a_terminal()
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.seen = ""

    async def expect(self, text: str, timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while text not in self.seen:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {text!r} in:\n{self.seen}")
            readable, _, _ = await asyncio.to_thread(io_select.select, [self.fd], [], [], 0.2)
            if readable:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the other side has closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"ended without {text!r}:\n{self.seen}")
                self.seen += chunk.decode(errors="replace")

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def end_of_input(self) -> None:
        """Ctrl-D, as a person presses it at an empty prompt."""
        os.write(self.fd, b"\x04")

    async def exit_code(self, timeout: float = 20) -> int:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            await asyncio.sleep(0.1)
        os.kill(self.pid, signal.SIGABRT)  # the stacks, as in Connect.finish
        await asyncio.sleep(1)
        with contextlib.suppress(OSError):
            self.seen += os.read(self.fd, 65536).decode(errors="replace")
        raise AssertionError(f"still running:\n{self.seen}")

    async def ctrl_c_at_the_question(self) -> None:
        """Ctrl-C as a person presses it at a question: a moment after it shows.
        Sent at once, it can land between the prompt and the read that waits for
        the answer, where no program sees it until the read ends."""
        await asyncio.sleep(0.5)
        os.kill(self.pid, signal.SIGINT)

    def kill(self) -> None:
        """Make sure it is gone (a test that failed half way)."""
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
