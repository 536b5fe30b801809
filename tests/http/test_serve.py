"""`tiny-tasks serve`: its usage errors (the served app itself is tested in test_kill.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_tasks.cli import main


def test_serve_needs_an_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "runs.db")]) == 2
    assert "--app" in capsys.readouterr().err
    assert not (tmp_path / "runs.db").exists()


def test_serve_refuses_an_app_without_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "empty.py"
    app.write_text("VALUE = 1\n")
    assert main(["serve", str(tmp_path / "runs.db"), "--app", str(app)]) == 2
    assert capsys.readouterr().err == (
        f"tiny-tasks: --app {str(app)!r} defines no task (no Task among its names)\n"
    )
    assert not (tmp_path / "runs.db").exists()


def test_serve_reports_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    app = tmp_path / "tasks.py"
    app.write_text("from tiny_tasks import task\n\n@task\ndef echo(x):\n    return x\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["serve", str(tmp_path / "runs.db"), "--app", str(app), "--port", str(port)])
    assert status == 1
    assert "Address already in use" in capsys.readouterr().err
