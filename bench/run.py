"""Benchmark tiny-tasks against LangGraph's functional API and DBOS, in one run.

    bench/run            # full run: table on stdout, bench/RESULTS.md, bench/pause_resume.png
    bench/run --quick    # tiny sizes of every scenario, for CI (outputs under bench/.env/quick)

The first call creates the bench-only environment bench/.env (downloads the peers from
PyPI); later calls reuse it until bench/requirements.txt changes. Then it starts one
throwaway PostgreSQL server, runs each system in its own process (each writes JSON) and
aggregates. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ENV = BENCH / ".env"
ENV_PYTHON = ENV / "bin" / "python"
REQUIREMENTS = BENCH / "requirements.txt"
STAMP = ENV / ".installed"

# (key for --systems, module in bench/systems, --variant)
SYSTEMS = (
    ("bare", "bare_bench.py", ""),
    ("tiny-tasks", "tiny_tasks_bench.py", ""),
    ("tiny-tasks-alo", "tiny_tasks_bench.py", "at-least-once"),
    ("tiny-tasks-full", "tiny_tasks_bench.py", "full"),
    ("langgraph", "langgraph_bench.py", ""),
    ("langgraph-normal", "langgraph_bench.py", "normal"),
    ("dbos", "dbos_bench.py", "default"),
    ("dbos-1ms", "dbos_bench.py", "1ms"),
)
SYSTEM_TIMEOUT = {"quick": 300, "full": 3 * 3600}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one measured run, systems in parallel (for CI)",
    )
    parser.add_argument(
        "--systems",
        default=",".join(key for key, _, _ in SYSTEMS),
        help="comma-separated subset of: %(default)s",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios (stream,pause_resume,steps,resume_after_steps)",
    )
    parser.add_argument(
        "--backends", default="", help="comma-separated: none,memory,sqlite,postgres"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="measured runs (default 3, quick 1)"
    )
    parser.add_argument(
        "--cell-budget",
        type=float,
        default=None,
        help="seconds the measured runs of one cell may take before it is "
        "shrunk or skipped (default 120, quick 10; 0: no limit)",
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="where RESULTS.md and pause_resume.png go (default bench/, quick: bench/.env/quick)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip the Postgres backend")
    parser.add_argument("--setup-only", action="store_true", help="create bench/.env and stop")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: write RESULTS.md and the plot again from the "
        "last run's figures (bench/.env/last-run)",
    )
    return parser.parse_args()


# ---- the bench-only environment ----------------------------------------------------


def _wanted_stamp() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update((REPO / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_environment() -> None:
    """Create or update bench/.env so that it holds the pinned peers and this repo."""
    wanted = _wanted_stamp()
    if ENV_PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    print(f"setting up {ENV} (downloads the peers from PyPI the first time)", flush=True)
    if not ENV_PYTHON.exists():
        venv.create(ENV, with_pip=True)
    pip = [str(ENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS), "-e", f"{REPO}[postgres]"], check=True)
    STAMP.write_text(wanted)


def running_in_environment() -> bool:
    return Path(sys.prefix).resolve() == ENV.resolve()


# ---- one run -----------------------------------------------------------------------


def system_command(
    module: str, variant: str, args: argparse.Namespace, pg_url: str | None, out: Path
) -> list[str]:
    command = [str(ENV_PYTHON), str(BENCH / "systems" / module), "--out", str(out)]
    if variant:
        command += ["--variant", variant]
    if pg_url:
        command += ["--postgres", pg_url]
    if args.quick:
        command.append("--quick")
    for flag, value in (
        ("--only", args.only),
        ("--backends", args.backends),
        ("--repeat", args.repeat),
        ("--cell-budget", args.cell_budget),
    ):
        if value not in (None, ""):
            command += [flag, str(value)]
    return command


def run_systems(
    args: argparse.Namespace, pg_url: str | None, workdir: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    chosen = [s for s in args.systems.split(",") if s]
    unknown = set(chosen) - {key for key, _, _ in SYSTEMS}
    if unknown:
        raise SystemExit(f"unknown system(s): {', '.join(sorted(unknown))}")
    jobs = []
    for key, module, variant in SYSTEMS:
        if key in chosen:
            out = workdir / f"{key}.json"
            jobs.append((key, out, system_command(module, variant, args, pg_url, out)))
    timeout = SYSTEM_TIMEOUT["quick" if args.quick else "full"]
    failures: list[str] = []
    if args.quick:  # figures do not matter in quick mode: use both cores
        running = [(key, subprocess.Popen(cmd, cwd=BENCH)) for key, _, cmd in jobs]
        try:
            codes = {key: proc.wait(timeout=timeout) for key, proc in running}
        finally:
            for _, proc in running:
                if proc.poll() is None:
                    proc.kill()
    else:  # one at a time, so that no system disturbs another's figures
        codes = {}
        for key, _, cmd in jobs:
            print(f"== {key}", file=sys.stderr, flush=True)
            codes[key] = subprocess.run(cmd, cwd=BENCH, timeout=timeout, check=False).returncode
    documents = []
    for key, out, _ in jobs:
        if codes[key] != 0 or not out.exists():
            failures.append(f"{key}: exited with status {codes[key]}")
            continue
        documents.append(json.loads(out.read_text(encoding="utf-8")))
    return documents, failures


def postgres_version(pg_url: str) -> str:
    import psycopg

    with psycopg.connect(f"{pg_url}/postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'} (throwaway server on loopback, default settings)"


JOURNAL_SECTION = """
## Journal size (tiny-tasks)

Bytes a run's journal grows by per answered interrupt in the pause/resume workload
(`bench/journal_size.py`; the SQLite file figure includes keys and page slack).

"""


FLOORS_SECTION = """
## Commit floors (same run, same PostgreSQL server)

One durable write with no workflow engine (`bench/floors.py`): what a step, a pause or a
partial mark costs at least at each durability level, and the event-loop-to-thread hop a
saver that runs its database work on a thread pays per awaited call.

"""

JOURNAL_COST_SECTION = """
## Cost against journal size (tiny-tasks)

What one more partial, one more step and one resume cost once a run's journal already
holds `entries` recorded steps (`bench/journal_cost.py`), with a least-squares line
through them: the slope is what 1,000 more entries add.

"""


def run_script(script: str, quick: bool, pg_url: str | None = None) -> str:
    """Run a bench/ script in the bench environment; its stdout, or "failed: ..." ."""
    command = [str(ENV_PYTHON), str(BENCH / script), *(["--quick"] if quick else [])]
    if pg_url:
        command += ["--postgres", pg_url]
    print(f"== {script}", file=sys.stderr, flush=True)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if finished.returncode != 0:
        return f"failed: {finished.stderr.strip()[-500:]}"
    return finished.stdout.strip()


def measure_journal_size(quick: bool) -> str:
    """The Markdown table `journal_size.py` prints (it runs after the timed systems)."""
    command = [str(ENV_PYTHON), str(BENCH / "journal_size.py"), *(["--quick"] if quick else [])]
    print("== journal size", file=sys.stderr, flush=True)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if finished.returncode != 0:
        return f"failed: {finished.stderr.strip()[-500:]}"
    return finished.stdout.strip()


RUNTIME_SECTION = """
## The runtime (tiny-tasks workers)

Worker throughput (runs of 5 steps and one message wait answered by another process,
completed per second by N worker processes; beside DBOS queues on the same database),
recovery after a worker's SIGKILL, the claim query among 1,000,000 paused runs with its
plan, and timer lateness under load (`bench/runtime.py`, see bench/README.md).

"""


def measure_runtime(quick: bool) -> str:
    """The Markdown tables `runtime.py` prints (it runs after the timed systems)."""
    command = [
        str(ENV_PYTHON),
        str(BENCH / "runtime.py"),
        "--markdown",
        "--dbos",
        str(ENV_PYTHON),
        *(["--quick"] if quick else []),
    ]
    print("== runtime", file=sys.stderr, flush=True)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if finished.returncode != 0:
        return f"failed: {finished.stderr.strip()[-500:]}"
    return finished.stdout.strip()


def main() -> int:
    args = parse_args()
    if not running_in_environment():
        ensure_environment()
        if args.setup_only:
            return 0
        os.execv(str(ENV_PYTHON), [str(ENV_PYTHON), __file__, *sys.argv[1:]])
    # Turn a plain `kill` into an exit, so the throwaway server is stopped and removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.path.insert(0, str(BENCH))
    import _report
    from _pg import find_bin_dir, throwaway_postgres

    started = time.perf_counter()
    out_dir = Path(args.out_dir) if args.out_dir else (ENV / "quick" if args.quick else BENCH)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = ENV / "last-run"  # the systems' JSON, kept (git-ignored) for a closer look
    if args.report_only:
        meta = json.loads((raw / "meta.json").read_text(encoding="utf-8"))
        documents = [
            json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(raw.glob("*.json"))
            if path.name != "meta.json"
        ]
        return report(documents, [], meta, out_dir, started)
    meta = {
        "command": shlex.join(["bench/run", *sys.argv[1:]]),
        "quick": args.quick,
        "load_at_start": _report.load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="tiny-tasks-bench-") as tmp:
        if args.no_postgres:
            meta["floors"] = run_script("floors.py", args.quick)
            documents, failures = run_systems(args, None, Path(tmp))
            meta["journal_cost"] = run_script("journal_cost.py", args.quick)
            server = "not used"
        else:
            try:
                find_bin_dir()
            except RuntimeError as missing:
                if not os.environ.get("BENCH_POSTGRES_URL"):
                    raise SystemExit(f"{missing} (or pass --no-postgres)") from None
            with throwaway_postgres() as pg_url:
                server = postgres_version(pg_url)
                meta["floors"] = run_script("floors.py", args.quick, pg_url)
                documents, failures = run_systems(args, pg_url, Path(tmp))
                meta["journal_cost"] = run_script("journal_cost.py", args.quick, pg_url)
    meta.update(server=server, load_at_end=_report.load_average())

    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir()
    for document in documents:
        name = document["system"].replace(" ", "-").replace("(", "").replace(")", "")
        (raw / f"{name}.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    (raw / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return report(documents, failures, meta, out_dir, started)


def report(
    documents: list[dict[str, Any]],
    failures: list[str],
    meta: dict[str, Any],
    out_dir: Path,
    started: float,
) -> int:
    """Print the table, write RESULTS.md and the plot; the exit status of the run."""
    import _report

    rows = _report.rows_from(documents)
    print()
    print(_report.plain(_report.table(rows)))
    journal_sizes = measure_journal_size(meta["quick"])
    runtime = measure_runtime(meta["quick"])
    floors = meta.get("floors", "not measured")
    journal_cost = meta.get("journal_cost", "not measured")
    for title, text in (
        ("commit floors", floors),
        ("journal cost", journal_cost),
        ("journal size", journal_sizes),
        ("runtime", runtime),
    ):
        print(f"\n{title}:\n{text}")
        if text.startswith("failed"):
            failures.append(f"{title}: {text}")
    plot = out_dir / "pause_resume.png"
    plotted = _report.plot_pause_resume(documents, str(plot))
    results = out_dir / "RESULTS.md"
    results.write_text(
        _report.results_markdown(
            documents,
            meta["command"],
            meta["server"],
            plot.name if plotted else None,
            (meta["load_at_start"], meta["load_at_end"]),
        )
        + FLOORS_SECTION
        + floors
        + "\n"
        + JOURNAL_COST_SECTION
        + journal_cost
        + "\n"
        + JOURNAL_SECTION
        + journal_sizes
        + "\n"
        + RUNTIME_SECTION
        + runtime
        + "\n",
        encoding="utf-8",
    )
    errors = [r for r in rows if r.status == "error"]
    print(f"\nwrote {results}" + (f" and {plot}" if plotted else ""))
    print(f"total {time.perf_counter() - started:.0f} s")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    for row in errors:
        print(f"ERROR {row.scenario} / {row.system} / {row.backend}: {row.note}", file=sys.stderr)
    return 1 if failures or errors else 0


if __name__ == "__main__":
    sys.exit(main())
