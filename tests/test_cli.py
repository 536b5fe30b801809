"""The operator CLI (`tiny-tasks runs|show|delete|vacuum`): output, the user's code and
keys, and one clear line (never a traceback) for every wrong input."""

from __future__ import annotations

import asyncio
import base64
import os
import pty
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
from approval_task import pause

from tiny_tasks.cli import main
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite
from tiny_tasks.serde import generate_key

SRC = Path(__file__).resolve().parent.parent / "src"


def paused_store(path: Path, *run_ids: str) -> str:
    async def write() -> None:
        async with SqliteSaver(path) as saver:
            for run_id in run_ids:
                await pause(saver, run_id, run_id.split("-")[0])

    asyncio.run(write())
    return str(path)


def cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m tiny_tasks ARGS` in a process of its own (user code is imported there)."""
    return subprocess.run(
        [sys.executable, "-m", "tiny_tasks", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), **env},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`tiny-tasks ARGS` in this process: (exit status, stdout, stderr)."""
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    """The single line a failure prints on stderr (no traceback, nothing else)."""
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err.strip()


def test_cli_lists_shows_and_deletes_runs_of_a_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = paused_store(tmp_path / "runs.sqlite", "invoice-7", "memo-1")

    listed = cli("runs", store, "--status", "paused")  # as installed: python -m tiny_tasks
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "RUN",
        "ID",
        "TASK",
        "STATUS",
        "PENDING",
        "DELIVERED",
        "UPDATED",
        "LEASE",
        "WAKES",
    ]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["memo-1", "approval", "paused", "1", "1"],
        ["invoice-7", "approval", "paused", "1", "1"],
    ]

    status, out, err = run(capsys, "show", store, "invoice-7")
    assert (status, err) == (0, "")
    assert "status     paused (version" in out
    assert "input      'invoice'" in out
    assert "pending    approval/interrupt#0: {'approve': 'invoice'}" in out

    assert run(capsys, "delete", store, "invoice-7") == (0, "deleted invoice-7\n", "")
    gone = "tiny-tasks: no run 'invoice-7' is stored\n"
    assert run(capsys, "show", store, "invoice-7") == (1, "", gone)
    assert run(capsys, "delete", store, "invoice-7") == (1, "", gone)
    _, out, _ = run(capsys, "runs", store)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["memo-1"]


# --- the user's code: types in __main__, in a package, registered names --------------

SCRIPT = """
import asyncio, sys
from dataclasses import dataclass
from tiny_tasks import interrupt, task
from tiny_tasks.savers import SqliteSaver

@dataclass
class Order:
    id: int

@task
async def approve(order):
    interrupt({"ok?": order})

async def run(path):
    async with SqliteSaver(path) as saver:
        async for _ in approve(Order(3), run_id="r1", checkpointer=saver):
            pass

if __name__ == "__main__":
    asyncio.run(run(sys.argv[1]))
"""


def write_script(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_a_type_from_the_users_script_needs_app_and_is_not_called_damaged(tmp_path: Path) -> None:
    script = write_script(tmp_path, "app.py", SCRIPT)
    store = str(tmp_path / "runs.db")
    subprocess.run(
        [sys.executable, str(script), store],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
        timeout=60,
    )

    refused = cli("show", store, "r1")
    assert refused.returncode == 1
    assert one_line(refused.stderr) == (
        "tiny-tasks: cannot import type Order (module __main__) stored in run 'r1': pass "
        "--app path/to/script.py to import the code that defines it first (the run is not "
        "damaged)"
    )
    by_path = cli("show", store, "r1", "--app", str(script))
    by_module = cli("show", store, "r1", "--app", "app", cwd=tmp_path)
    for shown in (by_path, by_module):
        assert shown.returncode == 0, shown.stderr
        assert "input      Order(id=3)" in shown.stdout
        assert "pending    approve/interrupt#0: {'ok?': Order(id=3)}" in shown.stdout


PACKAGE_TYPES = """
from dataclasses import dataclass
from tiny_tasks.serde import JsonSerializer

@dataclass
class Order:
    id: int

serializer = JsonSerializer()
serializer.register(Order, name="shop.Order")
"""


def store_orders(store: Path, *, registered: bool) -> None:
    sys.path.insert(0, str(store.parent))
    try:
        from shop.models import Order, serializer  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(store.parent))

    async def write() -> None:
        async with SqliteSaver(store, serde=serializer if registered else None) as saver:
            await pause(saver, "r1", Order(5))

    try:
        asyncio.run(write())
    finally:
        for name in ("shop", "shop.models"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("registered", [False, True])
def test_a_type_from_the_users_package_loads_with_app(tmp_path: Path, registered: bool) -> None:
    write_script(tmp_path, "shop/__init__.py", "")
    write_script(tmp_path, "shop/models.py", PACKAGE_TYPES)
    store = tmp_path / "runs.db"
    store_orders(store, registered=registered)

    refused = cli("show", str(store), "r1", cwd=tmp_path)
    assert refused.returncode == 1
    if registered:
        assert one_line(refused.stderr) == (
            "tiny-tasks: cannot find type 'shop.Order' stored in run 'r1': it is a name "
            "registered on your serializer; pass --app MODULE:SERIALIZER naming that "
            "serializer (or a saver whose serde it is)"
        )
    else:
        assert one_line(refused.stderr) == (
            "tiny-tasks: cannot import type Order (module shop.models) stored in run 'r1': "
            "pass --app shop.models to import the code that defines it first (the run is "
            "not damaged)"
        )
    app = "shop.models:serializer" if registered else "shop.models"
    shown = cli("show", str(store), "r1", "--app", app, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "input      Order(id=5)" in shown.stdout


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nosuch", "cannot import --app 'nosuch': ModuleNotFoundError: No module named 'nosuch'"),
        ("shop.models:nothing", "--app 'shop.models:nothing': shop.models has no 'nothing'"),
        (
            "shop.models:Order",
            "--app 'shop.models:Order': Order is neither a serializer nor a saver with a serde",
        ),
        ("missing.py", "--app 'missing.py': no such script"),
        ("broken.py", "cannot run --app 'broken.py': ZeroDivisionError: division by zero"),
    ],
)
def test_an_app_that_cannot_be_used_is_one_line(tmp_path: Path, app: str, message: str) -> None:
    write_script(tmp_path, "shop/__init__.py", "")
    write_script(tmp_path, "shop/models.py", PACKAGE_TYPES)
    write_script(tmp_path, "broken.py", "1 / 0\n")
    store = paused_store(tmp_path / "runs.db", "memo-1")
    refused = cli("show", store, "memo-1", "--app", app, cwd=tmp_path)
    assert refused.returncode == 2
    assert one_line(refused.stderr) == f"tiny-tasks: {message}"


# --- encrypted stores ----------------------------------------------------------------


def encrypted_store(path: Path, key: bytes) -> str:
    from tiny_tasks.serde import EncryptedSerializer, JsonSerializer

    async def write() -> None:
        serde = EncryptedSerializer(JsonSerializer(), key)
        async with SqliteSaver(path, serde=serde) as saver:
            await pause(saver, "secret-1", "secret")

    asyncio.run(write())
    return str(path)


def test_an_encrypted_store_is_read_with_a_key_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, other = generate_key(), generate_key(16)
    store = encrypted_store(tmp_path / "runs.db", key)

    status, out, err = run(capsys, "show", store, "secret-1")
    assert (status, out, one_line(err)) == (
        1,
        "",
        "tiny-tasks: run 'secret-1' is stored encrypted: pass --key-env NAME, naming an "
        "environment variable that holds the key",
    )
    urlsafe = base64.urlsafe_b64encode(key).decode().rstrip("=")
    for text in (key.hex(), base64.b64encode(key).decode(), urlsafe, f"{other.hex()},{key.hex()}"):
        monkeypatch.setenv("TT_KEY", text)
        status, out, err = run(capsys, "show", store, "secret-1", "--key-env", "TT_KEY")
        assert (status, err) == (0, "")
        assert "input      'secret'" in out

    monkeypatch.setenv("TT_KEY", other.hex())
    status, out, err = run(capsys, "show", store, "secret-1", "--key-env", "TT_KEY")
    assert (status, out, one_line(err)) == (
        1,
        "",
        "tiny-tasks: run 'secret-1' was encrypted with a key other than the key(s) in $TT_KEY",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "--key-env TT_KEY: the environment variable TT_KEY is not set"),
        ("", "--key-env TT_KEY: the environment variable TT_KEY is empty"),
        ("not a key", "--key-env TT_KEY: the variable does not hold keys of 16, 24 or 32 bytes"),
        ("abcd", "--key-env TT_KEY: the variable does not hold keys of 16, 24 or 32 bytes"),
    ],
)
def test_a_missing_or_malformed_key_is_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    message: str,
) -> None:
    store = encrypted_store(tmp_path / "runs.db", generate_key())
    if value is None:
        monkeypatch.delenv("TT_KEY", raising=False)
    else:
        monkeypatch.setenv("TT_KEY", value)
    status, out, err = run(capsys, "show", store, "secret-1", "--key-env", "TT_KEY")
    assert (status, out) == (2, "")
    assert one_line(err).startswith(f"tiny-tasks: {message}")


def test_a_genuinely_damaged_run_is_still_reported_as_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = paused_store(tmp_path / "runs.db", "memo-1")
    with closing(sqlite3.connect(store)) as connection, connection:
        connection.execute("UPDATE tiny_tasks_entries SET data = X'7b226b223a' WHERE seq = 0")
    status, out, err = run(capsys, "show", store, "memo-1")
    assert (status, out) == (1, "")
    line = one_line(err)
    assert line.startswith("tiny-tasks: the stored journal entry 0 is damaged (")
    assert "restore it from a backup, or delete the run" in line


# --- wrong stores and arguments: one line, the right status, nothing created ---------


def test_stores_that_are_not_tiny_tasks_stores_are_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "other.db"
    with closing(sqlite3.connect(foreign)) as connection, connection:
        connection.execute("CREATE TABLE things (x)")
    (tmp_path / "junk.db").write_bytes(b"hello, I am not a database" * 100)
    (tmp_path / "empty.db").write_bytes(b"")
    cases = {
        str(tmp_path): f"tiny-tasks: {str(tmp_path)!r} is a directory, not a SQLite store",
        str(tmp_path / "nope.db"): (
            f"tiny-tasks: no SQLite store at {str(tmp_path / 'nope.db')!r} (the file does "
            "not exist)"
        ),
        str(tmp_path / "junk.db"): (
            f"tiny-tasks: {str(tmp_path / 'junk.db')!r} is not a SQLite database"
        ),
        str(tmp_path / "empty.db"): (
            f"tiny-tasks: {str(tmp_path / 'empty.db')!r} is a SQLite database but not a "
            "tiny-tasks store"
        ),
        str(
            foreign
        ): f"tiny-tasks: {str(foreign)!r} is a SQLite database but not a tiny-tasks store",
    }
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    for store, message in cases.items():
        for command in (["runs", store], ["show", store, "r1"], ["vacuum", store]):
            status, out, err = run(capsys, *command)
            assert (status, out, one_line(err)) == (2, "", message)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--limit", "-1"], "argument --limit: must be at least 1, not -1"),
        (["--limit", "0"], "argument --limit: must be at least 1, not 0"),
        (["--limit", "ten"], "argument --limit: expected a whole number, not 'ten'"),
        (["--offset", "-3"], "argument --offset: must be at least 0, not -3"),
        (["--status", "lost"], "argument --status: invalid choice: 'lost'"),
    ],
)
def test_bad_arguments_are_one_usage_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    store = paused_store(tmp_path / "runs.db", "memo-1")
    status, out, err = run(capsys, "runs", store, *arguments)
    assert (status, out) == (2, "")
    line = one_line(err)
    assert line.startswith(f"tiny-tasks runs: {message}")
    assert line.endswith("(see tiny-tasks runs --help)")


def test_a_missing_command_or_argument_is_one_usage_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for arguments in ([], ["show"], ["explode", "x"]):
        status, out, err = run(capsys, *arguments)
        assert (status, out) == (2, "")
        assert one_line(err).endswith("--help)")


def test_a_wrong_postgres_url_fails_at_once_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://nobody:hunter2@/nodb?host={tmp_path}"
    for command in (["runs", url], ["show", url, "r1"], ["delete", url, "r1"]):
        status, out, err = run(capsys, *command)
        assert (status, out) == (1, "")
        line = one_line(err)
        assert line.startswith("tiny-tasks: cannot connect to the PostgreSQL store: ")
        assert "No such file or directory" in line
        assert "hunter2" not in line
    status, out, err = run(capsys, "vacuum", url)
    assert (status, one_line(err)) == (
        2,
        "tiny-tasks: vacuum is for SQLite stores; PostgreSQL gives space back with its own "
        "VACUUM (autovacuum does it by default)",
    )


def test_ids_and_names_with_control_characters_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = paused_store(tmp_path / "runs.db", "plain-1")

    async def write() -> None:
        async with SqliteSaver(store) as saver:
            for run_id in ("evil\nid", "bell\x07\x1b[31m"):
                await saver.save(
                    CheckpointWrite(run_id, "task\twith\ttabs", "running", 0, (), b"", ()), None
                )

    asyncio.run(write())
    status, out, err = run(capsys, "runs", store)
    assert (status, err) == (0, "")
    rows = out.splitlines()
    assert len(rows) == 4
    assert sorted(row.split()[0] for row in rows[1:]) == [
        "'bell\\x07\\x1b[31m'",
        "'evil\\nid'",
        "plain-1",
    ]
    assert sum("'task\\twith\\ttabs'" in row for row in rows) == 2
    assert "\x1b" not in out

    status, out, err = run(capsys, "delete", store, "evil\nid")
    assert (status, out, err) == (0, "deleted 'evil\\nid'\n", "")
    status, out, err = run(capsys, "show", store, "evil\nid")
    assert (status, out, one_line(err)) == (1, "", "tiny-tasks: no run 'evil\\nid' is stored")


# --- runs --all and vacuum, with progress on a terminal ------------------------------


def many_runs(path: Path, count: int) -> str:
    async def write() -> None:
        async with SqliteSaver(path) as saver:
            for number in range(count):
                write = CheckpointWrite(f"run-{number:05d}", "task", "paused", 0, ("q",), b"", ())
                await saver.save(write, None)

    asyncio.run(write())
    return str(path)


def test_runs_all_lists_every_run_newest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = many_runs(tmp_path / "runs.db", 2500)
    status, out, err = run(capsys, "runs", store, "--all")
    assert (status, err) == (0, "")  # stderr is not a terminal here: no progress
    ids = [line.split()[0] for line in out.splitlines()[1:]]
    assert len(ids) == 2500
    assert sorted(ids, reverse=True) == sorted(ids, reverse=True)
    assert set(ids) == {f"run-{number:05d}" for number in range(2500)}
    status, out, _ = run(capsys, "runs", store, "--all", "--offset", "2400")
    assert len(out.splitlines()) == 101
    status, out, _ = run(capsys, "runs", store)
    assert len(out.splitlines()) == 21  # --limit 20 by default


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(tmp_path: Path) -> None:
    store = many_runs(tmp_path / "runs.db", 2100)
    main_fd, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tiny_tasks", "runs", store, "--all"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "PYTHONPATH": str(SRC)},
            timeout=60,
            check=False,
        )
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main_fd)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 2101
    assert (
        shown
        == b"".join(b"\r\x1b[Klisted %d runs" % count for count in (1000, 2000, 2100)) + b"\r\x1b[K"
    )


def test_vacuum_command_shrinks_the_file_after_a_big_run_is_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.db"
    store = paused_store(path, "memo-1")

    async def big_run() -> None:
        async with SqliteSaver(store) as saver:
            entries = tuple(os.urandom(2**20) for _ in range(10))
            await saver.save(CheckpointWrite("big", "task", "running", 0, (), b"", entries), None)

    small = path.stat().st_size
    asyncio.run(big_run())
    status, out, err = run(capsys, "delete", store, "big")
    assert status == 0
    big = path.stat().st_size  # the last connection to close folded the WAL in
    status, out, err = run(capsys, "vacuum", store)
    assert (status, err) == (0, "")
    assert out.startswith(f"vacuumed {store}: ")
    assert big > small + 10 * 2**20
    assert path.stat().st_size <= small + 64 * 1024
    status, out, _ = run(capsys, "runs", store)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["memo-1"]
