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
from ._html import Markup, ago, escape, html, join, pretty, timestamp
from ._timeline import Moment

__all__ = ["Page", "PendingRun", "RunView", "inbox_regions", "layout", "run_regions"]

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
        items=join(_answer_item(page, run, item, "inbox") for item in run.items),
        all=_answer_all(count),
    )


def _answer_all(count: int) -> Markup:
    return html(
        '<div class="answer-all" data-answer-all $hidden><button type="button" '
        'class="primary">Answer all <span data-count>$count</span> together</button>'
        '<p class="hint">Sends every form of this run in one request.</p></div>',
        hidden=Markup("hidden") if count < 2 else "",
        count=count,
    )


def _answer_item(
    page: Page,
    run: PendingRun,
    item: Asked,
    back: str,
    submitted: Submitted | None = None,
    errors: Mapping[str, str] | None = None,
) -> Markup:
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


# -- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunView:
    """Everything the page of one run shows."""

    state: Any  # RunState
    pending: PendingRun | None
    moments: Sequence[Moment]
    partials: Sequence[tuple[int, Any]]
    earlier: int
    submitted: Submitted | None = None
    errors: Mapping[str, str] | None = None
    notice: str | None = None
    partials_kept: bool = True  # the saver keeps the stream log (`load_partials`)


def run_body(page: Page, view: RunView) -> Markup:
    """The page of one run (its regions, plus the partials' tail)."""
    regions = run_regions(page, view)
    state = view.state
    if view.partials:
        tail = join(_partial(seq, value) for seq, value in view.partials)
    else:
        tail = Markup("")
    last = view.partials[-1][0] if view.partials else view.earlier - 1
    return html(
        """<nav class="crumbs" aria-label="Breadcrumb"><a href="$runs">Runs</a> /
<code>$run_id</code></nav>
<div class="page-head" data-region="head">$head</div>
$notice
<section class="card" aria-labelledby="waiting-h"><h2 id="waiting-h">Waiting on you</h2>
<div class="groups" data-region="pending" data-keyed>$pending</div></section>
<div data-region="outcome">$outcome</div>
<section class="card" aria-labelledby="partials-h"><h2 id="partials-h">Partials</h2>
$earlier<ol class="partials" data-partials data-stream="$stream" data-after="$last"
 data-status="$status" aria-live="polite">$tail</ol>
<p class="empty-line" data-partials-empty $empty_hidden>$empty</p></section>
<section class="card" aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline</h2>
<div data-region="timeline">$timeline</div></section>
<section class="card danger" aria-labelledby="actions-h"><h2 id="actions-h">Actions</h2>
<div data-region="actions">$actions</div></section>""",
        runs=page.url("/ui/runs"),
        run_id=state.run_id,
        head=regions["head"],
        notice=html('<div class="notice ok" role="status">$text</div>', text=view.notice)
        if view.notice
        else "",
        pending=regions["pending"],
        outcome=regions["outcome"],
        earlier=html('<p class="hint">$n earlier partials are not shown.</p>', n=view.earlier)
        if view.earlier
        else "",
        stream=page.url(f"/runs/{quote(state.run_id, safe='')}/stream"),
        last=last,
        status=state.status,
        tail=tail,
        empty_hidden=Markup("hidden") if view.partials else "",
        empty="No partials yet. They appear here as the run produces them."
        if view.partials_kept
        else "This store does not keep partials (its saver has no load_partials): "
        "the ones the run makes from now on appear here.",
        timeline=regions["timeline"],
        actions=regions["actions"],
    )


def run_regions(page: Page, view: RunView) -> dict[str, Markup]:
    """The live regions of a run's page."""
    state = view.state
    head = html(
        """<h1>$task $badge</h1>
<dl class="facts"><div><dt>Run</dt><dd><code>$run_id</code></dd></div>
<div><dt>Started</dt><dd>$created$by</dd></div>
<div><dt>Last change</dt><dd>$updated</dd></div>$wake
<div class="input"><dt>Input</dt><dd><pre class="value">$input</pre></dd></div></dl>""",
        task=state.task_name,
        badge=badge(state.status),
        run_id=state.run_id,
        created=timestamp(state.created_at, page.now),
        by=html(" by $who", who=state.started_by) if state.started_by else "",
        updated=timestamp(state.updated_at, page.now),
        wake=html(
            "<div><dt>Wakes</dt><dd>$when</dd></div>", when=timestamp(state.wake_at, page.now)
        )
        if state.wake_at and state.status in ("sleeping", "paused")
        else "",
        input=pretty(state.input, 1500),
    )
    if view.pending is not None and view.pending.items:
        pending = html(
            """<section class="group" data-key="run:$run_id">
<ul class="interrupts" data-keyed>$items</ul>
$all</section>""",
            run_id=state.run_id,
            items=join(
                _answer_item(page, view.pending, item, "run", view.submitted, view.errors)
                for item in view.pending.items
            ),
            all=_answer_all(len(view.pending.items)),
        )
    else:
        pending = html(
            '<p class="empty-line" data-key="none">This run is not waiting on anyone$why.</p>',
            why=" now" if state.status not in ("done", "failed", "cancelled") else ": it finished",
        )
    return {
        "head": head,
        "pending": pending,
        "outcome": _outcome(state),
        "timeline": _timeline(page, view.moments),
        "actions": _actions(page, state),
    }


def _outcome(state: Any) -> Markup:
    if state.outcome is None:
        return Markup("")
    if state.outcome == "done":
        body = html('<pre class="value" data-result>$value</pre>', value=pretty(state.result))
        title = "Result"
    else:
        kind, message = state.error or ("", "")
        title = "Cancelled" if state.outcome == "cancelled" else "Failed"
        body = html('<p class="error-text"><strong>$kind</strong>: $message</p>', kind=kind,
                    message=message)  # fmt: skip
    return html(
        '<section class="card outcome outcome-$status" aria-labelledby="outcome-h">'
        '<h2 id="outcome-h">$title</h2>$body</section>',
        status=state.outcome,
        title=title,
        body=body,
    )


def _partial(seq: int, value: Any) -> Markup:
    return html(
        '<li data-seq="$seq"><span class="seq">#$seq</span><pre class="value">$value</pre></li>',
        seq=seq,
        value=pretty(value, 2000),
    )


def _timeline(page: Page, moments: Sequence[Moment]) -> Markup:
    if not moments:
        return Markup('<p class="empty-line">Nothing recorded yet.</p>')
    return html('<ol class="timeline">$items</ol>', items=join(_moment(page, m) for m in moments))


def _moment(page: Page, moment: Moment) -> Markup:
    details = []
    if moment.site:
        details.append(html("<code>$site</code>", site=moment.site))
    if moment.seconds is not None:
        details.append(escape(_duration(moment.seconds)))
    if moment.by is not None:
        details.append(html("by <strong>$who</strong>", who=moment.by))
    if moment.at is not None:
        details.append(timestamp(moment.at, page.now))
    body = Markup("")
    if moment.error is not None:
        body = html('<p class="error-text"><strong>$kind</strong>: $message</p>',
                    kind=moment.error[0], message=moment.error[1])  # fmt: skip
    elif moment.has_value:
        body = html('<pre class="value">$value</pre>', value=pretty(moment.value, 1500))
    return html(
        '<li class="moment moment-$kind"><p><span class="what">$title</span> $details</p>'
        "$body</li>",
        kind=moment.kind,
        title=moment.title,
        details=join(details, " · "),
        body=body,
    )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return ago(seconds)


def _actions(page: Page, state: Any) -> Markup:
    finished = state.status in ("done", "failed", "cancelled")
    cancel = Markup("")
    if not finished:
        cancel = _confirm(
            page,
            state.run_id,
            "/cancel",
            "Cancel this run…",
            "The run unwinds with RunCancelled at its next step (a paused run at once). "
            "Its outcome is kept as cancelled.",
            "Yes, cancel the run",
        )
    delete = _confirm(
        page,
        state.run_id,
        "/delete",
        "Delete this run…",
        "Removes the run and its journal from the store. This cannot be undone.",
        "Yes, delete the run",
    )
    return join([cancel, delete])


def _confirm(page: Page, run_id: str, tail: str, summary: str, text: str, button: str) -> Markup:
    return html(
        """<details class="confirm"><summary>$summary</summary>
<form method="post" action="$action"><input type="hidden" name="csrf" value="$csrf">
<p>$text</p><button type="submit" class="danger">$button <code>$run_id</code></button></form>
</details>""",
        summary=summary,
        action=page.run_url(run_id, tail),
        csrf=page.csrf,
        text=text,
        button=button,
        run_id=run_id,
    )


def feed_data(regions: Mapping[str, Markup], **extra: Any) -> str:
    """The JSON of one live update: the regions' HTML, and anything else the script uses."""
    return json.dumps({"regions": dict(regions), **extra}, ensure_ascii=False)
