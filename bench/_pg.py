"""A throwaway PostgreSQL server for one benchmark run.

`throwaway_postgres()` initialises a cluster in a temporary directory, starts it on a free
loopback port and yields its base URL (``postgresql://bench@127.0.0.1:PORT``); every system
creates its own database on it with `create_database`. The server is stopped and its files
removed on exit. The server refuses to run as root, so when we are root it runs as the
``postgres`` user.

Set ``BENCH_POSTGRES_URL`` to use an existing server instead (the role needs CREATEDB).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

BIN_DIR_CANDIDATES = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
USER = "bench"


def find_bin_dir() -> str:
    """The directory holding initdb/pg_ctl; raises RuntimeError if none is installed."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return os.path.dirname(os.path.realpath(on_path))
    for pattern in BIN_DIR_CANDIDATES:
        found = sorted(glob.glob(pattern), reverse=True)
        for directory in found:
            if os.path.exists(os.path.join(directory, "pg_ctl")):
                return directory
    raise RuntimeError(
        "PostgreSQL server binaries not found: install them (apt-get install postgresql) "
        "or set BENCH_POSTGRES_URL to an existing server"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private server and yield its base URL; stop and delete it afterwards."""
    existing = os.environ.get("BENCH_POSTGRES_URL")
    if existing:
        yield existing.rstrip("/")
        return
    bin_dir = find_bin_dir()
    root = tempfile.mkdtemp(prefix="tiny-tasks-bench-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run(
        _as_server_user(
            [
                f"{bin_dir}/initdb",
                "-D",
                data,
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c max_connections=200"
    subprocess.run(
        _as_server_user(
            [
                f"{bin_dir}/pg_ctl",
                "-D",
                data,
                "-l",
                os.path.join(root, "log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_ready(bin_dir, port)
        yield f"postgresql://{USER}@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_server_user([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(bin_dir: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL on port {port} did not become ready within 30 s")


def create_database(base_url: str, name: str) -> str:
    """Create (or recreate) database `name` on the server and return its URL."""
    import psycopg

    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"


if __name__ == "__main__":
    with throwaway_postgres() as url:
        print(create_database(url, "smoke"))
