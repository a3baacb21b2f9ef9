"""Child processes that die with their parent: how ``recoil demo`` and tests run roles.

Every child runs in its own session (so Ctrl-C in a terminal reaches only the
parent, which then stops the children in order), receives SIGKILL if the parent
dies (Linux ``PR_SET_PDEATHSIG``), and writes its output to a log file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGKILL to this child when its parent exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def recoil_command(*args: str) -> list[str]:
    """The argv that runs ``recoil ARGS`` with this interpreter."""
    return [sys.executable, "-m", "recoil", *args]


@dataclass
class Child:
    """One started role."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """Start named children; stop them all (reverse start order) on exit."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{name}.log"
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        child = Child(name, process, log_file)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if any child has exited, with the end of its log."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{child.name} exited with status {code}; its log ({child.log_file}):\n"
                    f"{child.log_tail()}"
                )

    def stop(self, child: Child, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
        """Signal one child (its whole session) and wait; SIGKILL if it hangs."""
        proc = child.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Reap anything the child left in its session (e.g. a worker's helpers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def stop_all(self, timeout: float = 20.0) -> None:
        for child in reversed(self.children):
            self.stop(child, timeout)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def wait_until(
    predicate: Callable[[], object], timeout: float, interval: float = 0.1, what: str = ""
) -> None:
    """Poll ``predicate()`` until true; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
