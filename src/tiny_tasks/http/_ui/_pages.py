"""The inbox's pages, rendered on the server from the stored runs (escaped throughout:
see `_html`). Each live part of a page is a region (`data-region`) that the page's
script replaces, or merges by key (`data-keyed`) so that a form being filled stays."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from ._forms import Asked, Submitted, render_answer
from ._html import Markup, html, join, timestamp

__all__ = [
    "STATUSES",
    "Page",
    "PendingRun",
    "answer_all",
    "answer_item",
    "badge",
    "feed_data",
    "inbox_body",
    "inbox_regions",
    "layout",
    "message_page",
    "runs_body",
]

STATUSES = ("queued", "running", "paused", "sleeping", "done", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Page:
    """What every page needs: where the app is mounted, the CSRF token, the time."""

    base: str
    csrf: str
    now: float
    principal: str | None = None

    def url(self, path: str, **query: str) -> str:
        """The URL of `path` under the app (query values encoded)."""
        tail = f"?{urlencode({k: v for k, v in query.items() if v})}" if query else ""
        return f"{self.base}{path}{tail.rstrip('?')}"

    def run_url(self, run_id: str, tail: str = "") -> str:
        """The inbox page (or an action, `tail`) of run `run_id`."""
        return f"{self.base}/ui/runs/{quote(run_id, safe='')}{tail}"


@dataclass(frozen=True, slots=True)
class PendingRun:
    """A paused run and the interrupts it waits on."""

    run_id: str
    task_name: str
    version: int
    paused_at: float
    created_at: float
    started_by: Any
    items: tuple[Asked, ...]
    deadlines: Mapping[str, float] = field(default_factory=dict)


# -- the layout ---------------------------------------------------------------------------


def layout(page: Page, title: str, current: str, body: Markup, feed: str | None) -> Markup:
    """A whole page: head, navigation, `body`; `feed` is the URL its live updates come from."""
    nav = join(
        html(
            '<a href="$href"$current>$label</a>',
            href=page.url(path),
            current=Markup(' aria-current="page"') if name == current else "",
            label=label,
        )
        for name, path, label in (("inbox", "/ui", "Waiting on you"), ("runs", "/ui/runs", "Runs"))
    )
    who = (
        html('<span class="who">Signed in as $who</span>', who=page.principal)
        if page.principal
        else ""
    )
    return html(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>$title · tiny-tasks</title>
<link rel="stylesheet" href="$css">
<script src="$js" defer></script>
</head>
<body data-base="$base" data-feed="$feed" data-now="$now">
<a class="skip" href="#main">Skip to content</a>
<header class="top"><div class="bar">
<a class="brand" href="$home"><span class="logo" aria-hidden="true">◆</span> tiny-tasks</a>
<nav aria-label="Main">$nav</nav>$who
</div></header>
<main id="main" tabindex="-1">$body</main>
</body>
</html>
""",
        title=title,
        css=page.url("/ui/static/inbox.css"),
        js=page.url("/ui/static/inbox.js"),
        base=page.base,
        feed=feed or "",
        now=f"{page.now:.3f}",
        home=page.url("/ui"),
        nav=nav,
        who=who,
        body=body,
    )


def message_page(page: Page, title: str, text: str) -> Markup:
    """A page that only says something (an error, a refusal) and where to go."""
    body = html(
        '<div class="empty"><h1>$title</h1><p>$text</p><p><a href="$home">Back to the inbox</a>'
        "</p></div>",
        title=title,
        text=text,
        home=page.url("/ui"),
    )
    return layout(page, title, "", body, None)


# -- waiting on you -----------------------------------------------------------------------


def inbox_body(page: Page, runs: Sequence[PendingRun]) -> Markup:
    """The inbox: every pending interrupt, grouped by run, oldest run first."""
    return html(
        """<div class="page-head"><h1>Waiting on you</h1>
<p class="lede">Every interrupt a run is paused on, oldest first. New ones appear here as
they happen; answered ones leave.</p></div>
<div class="groups" data-region="inbox" data-keyed aria-live="polite">$groups</div>""",
        groups=inbox_regions(page, runs)["inbox"],
    )


def inbox_regions(page: Page, runs: Sequence[PendingRun]) -> dict[str, Markup]:
    """The inbox's live regions: its groups and the count in the navigation."""
    if not runs:
        groups = html(
            """<div class="empty" data-key="empty"><h2>Nothing is waiting on you</h2>
<p>When a task calls <code>interrupt(...)</code>, its question shows up here, and you can
answer it without reloading. Start a run with <code>POST $runs</code> or
<code>tiny-tasks serve</code>, or look at the <a href="$list">runs</a> already stored.</p></div>""",
            runs=page.url("/runs"),
            list=page.url("/ui/runs"),
        )
    else:
        groups = join(_group(page, run) for run in runs)
    return {"inbox": groups}


def _group(page: Page, run: PendingRun) -> Markup:
    count = len(run.items)
    deadline = min(run.deadlines.values()) if run.deadlines else None
    return html(
        """<section class="card group" data-key="run:$run_id" aria-labelledby="$head_id">
<header class="group-head">
<h2 id="$head_id"><a href="$url">$task</a></h2>
<p class="meta">run <code>$run_id</code> · waiting $since$by$deadline</p>
</header>
<ul class="interrupts" data-keyed>$items</ul>
$all
</section>""",
        run_id=run.run_id,
        head_id="g-" + hashlib.sha256(run.run_id.encode()).hexdigest()[:12],
        url=page.run_url(run.run_id),
        task=run.task_name,
        since=timestamp(run.paused_at, page.now),
        by=html(" · started by $who", who=run.started_by) if run.started_by else "",
        deadline=html(
            ' · <strong class="deadline">answer by $when</strong>',
            when=timestamp(deadline, page.now),
        )
        if deadline
        else "",
        items=join(answer_item(page, run, item, "inbox") for item in run.items),
        all=answer_all(count),
    )


def answer_all(count: int) -> Markup:
    """The button that sends every form of a run together (shown for two or more)."""
    return html(
        '<div class="answer-all" data-answer-all $hidden><button type="button" '
        'class="primary">Answer all <span data-count>$count</span> together</button>'
        '<p class="hint">Sends every form of this run in one request.</p></div>',
        hidden=Markup("hidden") if count < 2 else "",
        count=count,
    )


def answer_item(
    page: Page,
    run: PendingRun,
    item: Asked,
    back: str,
    submitted: Submitted | None = None,
    errors: Mapping[str, str] | None = None,
) -> Markup:
    """One interrupt and its answer form (`back`: the page to return to without script)."""
    deadline = run.deadlines.get(item.site)
    return html(
        """<li class="interrupt" data-key="$key">
<form class="answer" method="post" action="$action" data-answer$fields>
<input type="hidden" name="csrf" value="$csrf">
<input type="hidden" name="site" value="$site">
<input type="hidden" name="next" value="$next">
$question
<p class="meta">interrupt <code>$site</code>$deadline</p>
<div class="notice" role="alert" data-notice hidden></div>
$submit
</form></li>""",
        key=json.dumps([run.run_id, item.site]),
        fields=Markup(" data-fields") if item.has_fields else "",
        submit=Markup(
            '<div class="actions"><button type="submit" class="primary">Answer</button></div>'
        )
        if item.has_fields
        else "",
        action=page.run_url(run.run_id, "/answer"),
        site=item.site,
        csrf=page.csrf,
        next=back,
        question=render_answer(item, submitted, errors),
        deadline=html(" · answer by $when", when=timestamp(deadline, page.now)) if deadline else "",
    )


# -- runs -------------------------------------------------------------------------------------


def runs_body(
    page: Page,
    runs: Sequence[Any],
    tasks: Sequence[str],
    status: str | None,
    task: str | None,
    next_cursor: str | None,
) -> Markup:
    """The runs, newest first, filtered by status and task."""
    status_options = join(
        html(
            '<option value="$v"$sel>$label</option>',
            v=value,
            label=value or "any status",
            sel=Markup(" selected") if value == (status or "") else "",
        )
        for value in ("", *STATUSES)
    )
    task_options = join(
        html(
            '<option value="$v"$sel>$label</option>',
            v=value,
            label=value or "any task",
            sel=Markup(" selected") if value == (task or "") else "",
        )
        for value in ("", *tasks)
    )
    if runs:
        rows = join(
            html(
                """<tr><td><a href="$url"><code>$run_id</code></a></td><td>$task</td>
<td>$badge</td><td class="num">$pending</td><td class="wide">$created</td>
<td class="wide">$updated</td></tr>""",
                url=page.run_url(run.run_id),
                run_id=run.run_id,
                task=run.task_name,
                badge=badge(run.status),
                pending=len(run.pending) or "",
                created=timestamp(run.created_at, page.now),
                updated=timestamp(run.updated_at, page.now),
            )
            for run in runs
        )
        listing = html(
            """<div class="table-wrap"><table class="runs">
<thead><tr><th scope="col">Run</th><th scope="col">Task</th><th scope="col">Status</th>
<th scope="col" class="num">Waiting</th><th scope="col" class="wide">Created</th>
<th scope="col" class="wide">Updated</th></tr></thead>
<tbody>$rows</tbody></table></div>$more""",
            rows=rows,
            more=html(
                '<p class="more"><a href="$url">Older runs →</a></p>',
                url=page.url("/ui/runs", status=status or "", task=task or "", cursor=next_cursor),
            )
            if next_cursor
            else "",
        )
    else:
        filtered = bool(status or task)
        listing = html(
            '<div class="empty"><h2>$title</h2><p>$text</p></div>',
            title="No runs match" if filtered else "No runs yet",
            text="Try another status or task, or clear the filters."
            if filtered
            else "Runs appear here once a task is started: POST /runs with "
            '{"task": ..., "input": ...}, the Client, or a worker.',
        )
    return html(
        """<div class="page-head"><h1>Runs</h1>
<p class="lede">Newest first. Open a run for its timeline, its partials and its outcome.</p></div>
<form class="filters" method="get" action="$action" role="search">
<label>Status <select name="status">$statuses</select></label>
<label>Task <select name="task">$tasks</select></label>
<button type="submit">Filter</button>$clear
</form>
$listing""",
        action=page.url("/ui/runs"),
        statuses=status_options,
        tasks=task_options,
        clear=html(' <a href="$url">Clear</a>', url=page.url("/ui/runs")) if status or task else "",
        listing=listing,
    )


def badge(status: str) -> Markup:
    """A run status as a coloured label."""
    return html('<span class="badge status-$status">$status</span>', status=status)


def feed_data(regions: Mapping[str, Markup], **extra: Any) -> str:
    """The JSON of one live update: the regions' HTML, and anything else the script uses."""
    return json.dumps({"regions": dict(regions), **extra}, ensure_ascii=False)
