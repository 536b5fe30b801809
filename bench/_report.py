"""Turn the systems' JSON documents into the table, RESULTS.md and the pause/resume plot."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from _harness import SCENARIOS, UNITS

OURS = "tiny-tasks"
# Row order within a cell: ours first, our other configurations, then each peer at its
# defaults followed by the same peer at our durability. LangGraph's stream rows follow
# tiny-tasks (at-least-once), the mode that, like LangGraph's stream, stores no partial.
SYSTEM_ORDER = (
    "tiny-tasks",
    "tiny-tasks (FULL)",
    "tiny-tasks (at-least-once)",
    "LangGraph",
    "LangGraph (NORMAL)",
    "DBOS (default poll)",
    "DBOS (1 ms poll)",
    "bare async generator",
)
BACKEND_ORDER = ("none", "memory", "sqlite", "postgres")
SCENARIO_TITLES = {
    "stream": "stream",
    "pause_resume": "pause/resume",
    "steps": "steps",
    "resume_after_steps": "resume after steps",
    "concurrent": "concurrent runs",
    "concurrent_4p": "concurrent runs, 4 processes",
}
# How much faster than each peer the issue asks us to be (peer time / our time).
TARGETS = {
    ("LangGraph", "stream"): 5,
    ("LangGraph", "pause_resume"): 10,
    ("LangGraph", "steps"): 10,
    ("LangGraph", "resume_after_steps"): 10,
    ("DBOS", "stream"): 30,
    ("DBOS", "pause_resume"): 30,
    ("DBOS", "steps"): 30,
    ("DBOS", "resume_after_steps"): 30,
}


@dataclass
class Row:
    scenario: str
    system: str
    backend: str
    size: int
    requested_size: int
    unit: str
    status: str
    note: str
    samples: list[float]  # seconds per operation, one per measured run
    bare: float = 0.0  # seconds per bare generator item around this cell (0: not measured)
    durability: str = ""
    level: str = ""  # the key matched rows share ("NORMAL", "FULL", "on", "not stored"...)
    polling: str = ""  # why the figure measures a polling interval, if it does
    peak_rss_mib: list[float] | None = None
    peak_rss_total_mib: list[float] | None = None

    @property
    def ours(self) -> bool:
        return self.system.startswith(OURS)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def rows_from(documents: Iterable[dict[str, Any]]) -> list[Row]:
    rows = [
        Row(
            r["scenario"],
            r["system"],
            r["backend"],
            r["size"],
            r.get("requested_size") or r["size"],
            r["unit"],
            r["status"],
            r["note"],
            r["seconds_per_op"],
            r.get("bare_seconds", 0.0),
            r.get("durability", ""),
            r.get("level", ""),
            r.get("polling", ""),
            r.get("peak_rss_mib") or None,
            r.get("peak_rss_total_mib") or None,
        )
        for document in documents
        for r in document["results"]
    ]
    systems = list(dict.fromkeys([*SYSTEM_ORDER, *(row.system for row in rows)]))

    def order(row: Row) -> tuple[int, int, int, int]:
        backend = BACKEND_ORDER.index(row.backend) if row.backend in BACKEND_ORDER else 9
        return (
            SCENARIOS.index(row.scenario),
            row.requested_size,
            backend,
            systems.index(row.system),
        )

    return sorted(rows, key=order)


Key = tuple[str, str, int, str]


def _ours(rows: list[Row]) -> dict[Key, Row]:
    """Our rows by (scenario, backend, size, level); level "" is our default configuration."""
    found: dict[Key, Row] = {}
    for r in rows:
        if r.ours and r.status == "ok":
            if r.system == OURS:
                found[(r.scenario, r.backend, r.requested_size, "")] = r
            found.setdefault((r.scenario, r.backend, r.requested_size, r.level), r)
    return found


def reference(row: Row, ours: dict[Key, Row], matched: bool) -> Row | None:
    """Our row to compare `row` with: our default, or ours at `row`'s durability."""
    if matched and (row.ours or not row.level):
        return None
    return ours.get((row.scenario, row.backend, row.requested_size, row.level if matched else ""))


def raw_ratio(row: Row, mine: Row | None) -> float | None:
    """Their median time per operation over ours, as measured (no drift correction)."""
    if row.status != "ok" or mine is None or mine is row:
        return None
    return row.median / mine.median


def ratio(row: Row, mine: Row | None) -> float | None:
    """Their median time per operation over ours (same scenario, backend and size).

    Each median is first divided by the bare generator's speed measured around its
    cell, so that the machine's drift between the two cells does not count.
    """
    raw = raw_ratio(row, mine)
    if raw is None or mine is None or not (row.bare > 0 and mine.bare > 0):
        return raw
    return raw * mine.bare / row.bare


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


HEADER = [
    "scenario",
    "system",
    "backend",
    "durability",
    "size",
    "median",
    "min–max",
    "peak RSS",
    "bare µs",
    "× ours, same durability",
    "× ours default",
]
RIGHT = {4, 5, 6, 7, 8, 9, 10}


def _figure(row: Row, seconds: float) -> str:
    if row.scenario.startswith("concurrent"):  # shown as a rate
        return f"{_number(1 / seconds)} runs/s"
    return f"{_number(seconds * UNITS[row.scenario][1])} {row.unit}"


def table(rows: list[Row]) -> list[list[str]]:
    """Header and cells: where, durability, size, median, min–max, ratios to ours."""
    ours = _ours(rows)
    lines = [list(HEADER)]
    for row in rows:
        size = f"{row.size:,}" + ("*" if row.size != row.requested_size else "")
        rss = ""
        if row.status == "ok":
            median = _figure(row, row.median)
            if row.polling:
                median += " (polling)"
            if row.scenario.startswith("concurrent"):
                low_s, high_s = _figure(row, max(row.samples)), _figure(row, min(row.samples))
                spread = f"{low_s.split()[0]}–{high_s.split()[0]}"
            else:
                spread = (
                    f"{_number(min(row.samples) * UNITS[row.scenario][1])}–"
                    f"{_number(max(row.samples) * UNITS[row.scenario][1])}"
                )
            if row.peak_rss_mib:
                rss = f"+{statistics.median(row.peak_rss_mib):,.0f} MiB"
                if row.peak_rss_total_mib:
                    rss += f" ({statistics.median(row.peak_rss_total_mib):,.0f})"
            matched, default = reference(row, ours, True), reference(row, ours, False)
            same = _pair(ratio(row, matched), raw_ratio(row, matched))
            if matched is not None and matched.system != OURS:
                same += f" ({matched.system.removeprefix(OURS).strip(' ()')})"
            versus_default = _pair(ratio(row, default), raw_ratio(row, default))
            bare = f"{row.bare * 1e6:.3f}" if row.bare else ""
        else:
            median, spread, bare, same, versus_default = row.status, "", "", "", ""
        lines.append(
            [
                SCENARIO_TITLES[row.scenario],
                row.system,
                row.backend,
                row.durability,
                size,
                median,
                spread,
                rss,
                bare,
                same,
                versus_default,
            ]
        )
    return lines


def _pair(corrected: float | None, raw: float | None) -> str:
    """`corrected / raw` ratios, or "–"."""
    if corrected is None or raw is None:
        return "–"
    return f"{_times(corrected)} / {_times(raw)}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def plain(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    right = RIGHT
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(lines: list[list[str]]) -> str:
    head, *body = lines
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if i in RIGHT else "---" for i in range(len(head))) + "|",
    ]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
    return "\n".join(out)


def notes(rows: list[Row]) -> list[str]:
    """Cells not measured as asked (n/a, skipped, shrunk, measured once, error) and cells
    that measure a polling interval, one line per reason."""
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for row in rows:
        where = f"{SCENARIO_TITLES[row.scenario]} {row.requested_size:,}"
        if row.status != "ok" or row.note:
            label = (
                row.status
                if row.status != "ok"
                else "shrunk"
                if row.size != row.requested_size
                else "measured once"
            )
            grouped.setdefault((row.system, row.backend, label, row.note), []).append(where)
        if row.polling:
            key = (row.system, row.backend, "measures a polling interval", row.polling)
            grouped.setdefault(key, []).append(where)
    return [
        f"{system} / {backend}, {', '.join(cells)}: {label}: {note}"
        for (system, backend, label, note), cells in grouped.items()
    ]


def targets(rows: list[Row]) -> list[str]:
    """How the peers compare with the issue's targets, as Markdown table lines.

    A target is judged at matched durability (ours at the peer's level), both ratios
    (drift-corrected and raw) having to reach it; the default-against-default ratio is
    shown beside. A cell that measures a polling interval is never counted as met.
    """
    ours = _ours(rows)
    lines = [
        "| scenario | size | backend | peer | peer's durability | ours at | "
        "× same durability | × default vs default | target | verdict |",
        "|---|---:|---|---|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        peer = "DBOS" if row.system.startswith("DBOS") else row.system.split(" (")[0]
        goal = TARGETS.get((peer, row.scenario))
        if goal is None or row.ours or row.status != "ok":
            continue
        matched, default = reference(row, ours, True), reference(row, ours, False)
        times, raw = ratio(row, matched), raw_ratio(row, matched)
        default_text = _pair(ratio(row, default), raw_ratio(row, default))
        if times is None or raw is None or matched is None:
            verdict, same, ours_at = "no row of ours at this durability", "–", "–"
        else:
            same, ours_at = _pair(times, raw), f"{matched.system}: {matched.durability}"
            verdict = (
                "met"
                if min(times, raw) >= goal
                else "met once corrected"
                if times >= goal
                else f"NOT met ({min(times, raw) / goal:.0%})"
            )
        if row.polling:
            verdict = f"not counted: measures a polling interval ({row.polling})"
        lines.append(
            f"| {SCENARIO_TITLES[row.scenario]} | {row.requested_size:,} | {row.backend} | "
            f"{row.system} | {row.durability} | {ours_at} | {same} | {default_text} | "
            f"≥{goal}x | {verdict} |"
        )
    return lines if len(lines) > 2 else []


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
    }


def versions(documents: Iterable[dict[str, Any]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for document in documents:
        merged.update(document.get("versions", {}))
    return merged


def load_average() -> str:
    """The 1-minute load average: other work on the machine skews the figures."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def results_markdown(
    documents: list[dict[str, Any]],
    command: str,
    postgres: str,
    plot_name: str | None,
    load: tuple[str, str] = ("unknown", "unknown"),
) -> str:
    rows = rows_from(documents)
    info = machine()
    found_versions = versions(documents)
    python = found_versions.pop("python", platform.python_version())
    version_text = ", ".join(f"{name} {number}" for name, number in sorted(found_versions.items()))
    today = datetime.date.today().isoformat()
    parts = [
        "# Benchmark results",
        "",
        f"Generated by `{command}` on {today}; see README.md for the workloads and method.",
        "",
        f"* Python {python}; {version_text}",
        f"* Machine: {info['cores']} cores, {info['cpu']}, {info['memory']} memory, {info['os']}",
        f"* PostgreSQL: {postgres}",
        f"* 1-minute load average: {load[0]} at the start, {load[1]} at the end "
        f"(the bench itself adds about 1)",
        "* Figures are medians of the measured runs after a warm-up, per operation.",
        "  `bare µs` is what one item of a bare async generator cost right before and after",
        "  the cell (the machine is shared and its speed drifts by up to 2x over minutes).",
        "  Ratios are that system's median time over ours on the same backend and size",
        "  (above 1: we are faster), written `corrected / raw`: raw as measured, corrected",
        "  with each median first divided by its cell's `bare µs`, so that the drift between",
        "  the two cells cancels out (exact for CPU-bound work, rough for I/O-bound work).",
        "  `× ours, same durability` compares with our row whose commits promise the same",
        "  (the durability column: SQLite's journal mode and `synchronous` level as read from",
        "  each system's own connection, PostgreSQL's `synchronous_commit`; for a stream,",
        "  whether partials are stored one by one); `× ours default` with tiny-tasks as",
        "  shipped. Concurrent runs are shown as runs/s (the ratio is still time over time)",
        "  and `peak RSS`: what the measured run added to the process's resident memory at",
        "  its peak, after warm-ups at the same size (memory the allocator kept from them is",
        "  not counted again; with 4 processes, the sum over the workers), and in",
        "  parentheses, where recorded, the whole process's peak. `(polling)` marks a",
        "  figure that measures a polling interval. A size marked * was shrunk to fit the",
        "  cell budget.",
        "",
        markdown(table(rows)),
    ]
    goal_lines = targets(rows)
    if goal_lines:
        parts += [
            "",
            "## Against the targets",
            "",
            "Judged at matched durability (both ratios must reach the target); the",
            "default-against-default ratio is beside it.",
            "",
            *goal_lines,
        ]
    note_lines = notes(rows)
    if note_lines:
        parts += [
            "",
            "## Cells not measured as specified, and cells that measure polling",
            "",
            *[f"* {n}" for n in note_lines],
        ]
    if plot_name:
        parts += [
            "",
            "## Pause/resume round trip against K",
            "",
            f"![pause/resume cost against K]({plot_name})",
        ]
    return "\n".join(parts) + "\n"


def plot_pause_resume(documents: list[dict[str, Any]], path: str) -> bool:
    """Write the pause/resume plot (ms per round trip against K); False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for row in rows_from(documents):
        if row.scenario == "pause_resume" and row.status == "ok":
            series.setdefault(f"{row.system} / {row.backend}", []).append(
                (row.size, row.median * 1e3, min(row.samples) * 1e3, max(row.samples) * 1e3)
            )
    if not series:
        return False
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    styles = {"memory": ("-", "o"), "sqlite": ("--", "s"), "postgres": (":", "^")}
    systems = list(dict.fromkeys(label.rsplit(" / ", 1)[0] for label in sorted(series)))
    if OURS in systems:
        systems.remove(OURS)
        systems.insert(0, OURS)
    colours = {name: f"C{n}" for n, name in enumerate(systems)}

    def order(label: str) -> tuple[int, int]:
        system, backend = label.rsplit(" / ", 1)
        rank = BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else 9
        return systems.index(system), rank

    for label in sorted(series, key=order):
        points = series[label]
        points.sort()
        ks = [p[0] for p in points]
        medians = [p[1] for p in points]
        errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        system, backend = label.rsplit(" / ", 1)
        line, marker = styles.get(backend, ("-", "o"))
        axes.errorbar(
            ks,
            medians,
            yerr=errors,
            marker=marker,
            capsize=3,
            label=label,
            linestyle=line,
            color=colours[system],
        )
    axes.set_xscale("log")
    axes.set_xticks(sorted({k for points in series.values() for k, *_ in points}))
    axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.minorticks_off()
    axes.set_yscale("log")
    axes.set_xlabel("K (pauses and resumes in one run)")
    axes.set_ylabel("ms per pause/resume round trip (median, min–max)")
    axes.set_title("Pause/resume round-trip cost against K")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
