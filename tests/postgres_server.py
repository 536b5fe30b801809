"""A throwaway PostgreSQL server for tests: started in a temporary directory, removed after.

    with PostgresServer() as server:
        dsn = server.create_database("contract_1")
        ...

The server listens only on a Unix socket inside its own temporary directory (no TCP
port, so no port races with other test runs), trusts every local connection and, by
default, skips fsync for speed (pass `fsync=True` for crash tests that cut power to the
server with `stop(mode="immediate")`). PostgreSQL refuses to run as root, so when the
tests run as root the server runs as the `postgres` system user (the directory is
chowned to it); any other user runs it directly.

Nothing here skips: a missing binary or a server that does not start raises
`PostgresServerError` with the server's log, so a broken setup fails the tests loudly.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

DEFAULT_BIN_DIR = os.environ.get("TINY_TASKS_PG_BIN", "/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
PORT = 5432  # only names the socket file; the server opens no TCP port

__all__ = ["PostgresServer", "PostgresServerError"]


class PostgresServerError(RuntimeError):
    """The test server could not be found, started or stopped (the message says why)."""


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, owned by this object.

    `start()` runs initdb (once) and starts the server, `stop()` stops it and keeps the
    data (so a crash test can restart it), `cleanup()` stops it and deletes everything.
    Used as a context manager it starts on entry and cleans up on exit.
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] = DEFAULT_BIN_DIR,
        fsync: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.directory = Path(tempfile.mkdtemp(prefix="tt-pg-"))
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory  # short, so the socket path fits in 107 bytes
        self.log_file = self.directory / "server.log"
        self._run_as = _server_user()
        self._initialised = False
        self.running = False
        self._finalizer = weakref.finalize(
            self, _remove, self.directory, self._stop_command(), self._user_options()
        )

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for database `dbname` on this server."""
        return f"host={self.socket_dir} port={PORT} user={SUPERUSER} dbname={dbname}"

    def start(self) -> None:
        """Create the cluster if needed and start the server; wait until it accepts
        connections. Raises `PostgresServerError` with the server log on failure."""
        for program in ("initdb", "pg_ctl", "postgres"):
            if not (self.bin_dir / program).is_file():
                raise PostgresServerError(
                    f"PostgreSQL binary {self.bin_dir / program} is missing; install "
                    "PostgreSQL 15 or point TINY_TASKS_PG_BIN at its bin directory"
                )
        if self.running:
            return
        if self._run_as is not None:
            os.chown(self.directory, self._run_as.pw_uid, self._run_as.pw_gid)
            os.chmod(self.directory, 0o700)
        if not self._initialised:
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                "initdb",
            )
            self._initialised = True
        options = {
            "listen_addresses": "",
            "port": str(PORT),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
            **self.settings,
        }
        # pg_ctl -w waits (polling postmaster.pid) until the server accepts connections.
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                # pg_ctl hands these to a shell, hence the quoting.
                " ".join(f"-c {name}={shlex.quote(value)}" for name, value in options.items()),
            ],
            "pg_ctl start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data. `mode="immediate"` is a crash: no
        checkpoint, the next start replays the WAL."""
        if not self.running:
            return
        self._run([*self._stop_command(), "-m", mode], "pg_ctl stop")
        self.running = False

    def cleanup(self) -> None:
        """Stop the server (immediately) and delete its directory."""
        if self.running:
            self.stop(mode="immediate")
        self._finalizer.detach()
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create an empty database `name`; return its connection string."""
        self.execute(f'CREATE DATABASE "{name}" STRATEGY = FILE_COPY')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting anyone still connected to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement in autocommit mode (for CREATE/DROP DATABASE and the like)."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as connection:
            connection.execute(sql.encode())

    def _stop_command(self) -> list[str]:
        return [str(self.bin_dir / "pg_ctl"), "stop", "-w", "-t", "60", "-D", str(self.data_dir)]

    def _user_options(self) -> dict[str, Any]:
        """`subprocess` arguments that drop root privileges to the server's user."""
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def _run(self, command: list[str], what: str) -> None:
        result = subprocess.run(
            command,
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            **self._user_options(),
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else "(no server log)"
            raise PostgresServerError(
                f"{what} failed with exit status {result.returncode}\n"
                f"command: {' '.join(command)}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}\nserver log:\n{log}"
            )

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"PostgresServer({str(self.directory)!r}, {state})"


def _server_user() -> pwd.struct_passwd | None:
    """The user to run the server as: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresServerError(
            "the tests run as root, which PostgreSQL refuses, and there is no "
            f"{SUPERUSER!r} system user to run the server as; create one "
            f"(useradd --system {SUPERUSER}) or run the tests as another user"
        ) from None


def _remove(directory: Path, stop_command: list[str], user_options: dict[str, Any]) -> None:
    """Last resort at garbage collection or exit: stop a server left running, delete."""
    if (directory / "data" / "postmaster.pid").exists():
        subprocess.run(
            [*stop_command, "-m", "immediate"], capture_output=True, check=False, **user_options
        )
    shutil.rmtree(directory, ignore_errors=True)
