"""The page of one run: its facts, the interrupts it waits on, its outcome, the tail of
its partials, its timeline and its actions (escaped throughout: see `_html`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ._forms import Submitted
from ._html import Markup, ago, escape, html, join, pretty, timestamp
from ._pages import Page, PendingRun, answer_all, answer_item, badge
from ._timeline import Moment

__all__ = ["RunView", "run_body", "run_regions"]


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
                answer_item(page, view.pending, item, "run", view.submitted, view.errors)
                for item in view.pending.items
            ),
            all=answer_all(len(view.pending.items)),
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
