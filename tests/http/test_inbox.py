"""The inbox (`/ui`) in a real browser: Chromium from the distribution's packages, driven
by Playwright, against a real uvicorn server on 127.0.0.1. Screenshots of every page,
at desktop and phone width, go to docs/screenshots/ (the README links them)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from http_server import replayed, serving
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from saver_kinds import SAVER_KINDS, make_saver
from starlette.requests import Request

from tiny_tasks import RetryPolicy, TaskContext, emit, interrupt, task
from tiny_tasks.errors import AuthenticationError
from tiny_tasks.http import TaskApp

CHROMIUM = os.environ.get("TT_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

BUDGET = {
    "title": "Approve the budget",
    "description": "How much may be spent on this order?",
    "schema": {
        "type": "object",
        "properties": {
            "amount": {"type": "integer", "title": "Amount (EUR)", "minimum": 1},
            "note": {"type": "string", "title": "Note for the buyer", "maxLength": 80},
        },
        "required": ["amount"],
    },
    "default": {"note": "within the quarterly limit"},
}


@task
async def ask_budget(item: str) -> Any:
    return interrupt({**BUDGET, "title": f"Approve the budget for {item}"})


@task
async def ask_shipping(item: str) -> Any:
    return interrupt({"question": f"Ship {item} now?", "choices": ["ship now", "hold"]})


@task
async def purchase(item: str) -> dict[str, Any]:
    emit(f"quote received for {item}")
    budget, shipping = await asyncio.gather(ask_budget.invoke(item), ask_shipping.invoke(item))
    emit(f"ordering {item} for {budget['amount']} EUR")
    return {"item": item, "budget": budget, "shipping": shipping}


@task
async def sign_off(doc: str, ctx: TaskContext) -> str:
    answer = ctx.interrupt({"document": doc, "asks": "Reply with a JSON value"})
    return f"{doc}: {answer}"


HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@task
async def hostile(_: None) -> Any:
    emit({"text": HOSTILE})
    return interrupt({"title": HOSTILE, "description": HOSTILE, "choices": [HOSTILE, "fine"]})


@task
async def ask_name(_: None) -> Any:
    schema = {"type": "string", "title": "Release name", "minLength": 3, "pattern": "[a-z-]+"}
    return interrupt({"title": "Name the release", "schema": schema})


@task
async def ask_tags(_: None) -> Any:
    return interrupt({"tags": "which tags?", "known": ["stable", "beta"]})


@task
async def release(_: None) -> list[Any]:
    return list(await asyncio.gather(ask_name.invoke(None), ask_tags.invoke(None)))


async def fetch_price(item: str) -> int:
    return len(item) * 100


async def reserve(item: str) -> None:
    raise LookupError(f"no stock for {item}")


@task
async def restock(item: str, ctx: TaskContext) -> None:
    price = await ctx.step(fetch_price, item)
    emit(f"price {price}")
    await ctx.step(reserve, item, retry=RetryPolicy(attempts=1))


@task
async def deploy(_: None, ctx: TaskContext) -> Any:
    question = {"question": "Deploy to production?", "choices": ["yes", "no"]}
    return ctx.interrupt(question, timeout=timedelta(hours=4), default="no")


TASKS = [
    deploy,
    restock,
    purchase,
    ask_budget,
    ask_shipping,
    sign_off,
    hostile,
    release,
    ask_name,
    ask_tags,
]


def signed_in(request: Request) -> str:
    """The test's `auth` hook: the principal is the `x-user` header."""
    user = request.headers.get("x-user")
    if not user:
        raise AuthenticationError("send x-user")
    return user


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """The saver kind of the server: SQLite, unless a test is parametrised over all."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def server(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Any]]:
    saver = await make_saver(store_kind, request, tmp_path)
    async with serving(TaskApp(TASKS, saver, auth=signed_in, poll_interval=0.05)) as url:
        yield url, saver
    close = getattr(saver, "close", None)
    if close is not None:
        await close()


@pytest.fixture
async def browser(server: tuple[str, Any]) -> AsyncIterator[Browser]:
    # Closed before the server stops: the server waits for the pages' open event streams.
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium package"
    )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        await launched.close()


async def user(browser: Browser, name: str, size: dict[str, int] = DESKTOP) -> BrowserContext:
    """A browser context (its own cookies) whose requests are signed in as `name`."""
    return await browser.new_context(viewport=size, extra_http_headers={"x-user": name})


async def start(url: str, task_name: str, value: Any, run_id: str) -> None:
    async with httpx.AsyncClient(headers={"x-user": "api"}) as http:
        response = await http.post(
            f"{url}/runs", json={"task": task_name, "input": value, "run_id": run_id}
        )
        assert response.status_code == 201, response.text


async def stored(url: str, run_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"x-user": "api"}) as http:
        response = await http.get(f"{url}/runs/{run_id}")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data


async def shoot(context: BrowserContext, url: str, name: str, ready: str) -> None:
    """Screenshots of page `url` at desktop and phone width, once `ready` is visible."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await context.new_page()
        await page.set_viewport_size(size)
        await page.goto(url)
        await expect(page.locator(ready).first).to_be_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SHOTS / f"{name}-{label}.png", full_page=True)
        await page.close()


def item(page: Page, text: str) -> Any:
    return page.locator("li.interrupt").filter(has_text=text)


@pytest.mark.parametrize("store_kind", SAVER_KINDS, indirect=True)
async def test_two_parallel_interrupts_answered_live_then_the_run_completes(
    browser: Browser, server: tuple[str, Any], store_kind: str
) -> None:
    screenshots = store_kind == "sqlite"  # once, from a store with every feature
    url, saver = server
    alice = await user(browser, "alice")
    page = await alice.new_page()
    await page.goto(f"{url}/ui")
    await expect(page.get_by_role("heading", name="Nothing is waiting on you")).to_be_visible()
    if screenshots:
        await shoot(alice, f"{url}/ui", "inbox-empty", ".empty")
    await page.evaluate("window.__sameDocument = true")

    # A run pauses on two interrupts at once: both appear, without a reload.
    await start(url, "purchase", "a laptop", "order-1")
    await expect(page.locator("li.interrupt")).to_have_count(2)
    budget, shipping = item(page, "Approve the budget"), item(page, "Ship a laptop now?")
    await expect(budget).to_have_count(1)
    await expect(shipping.get_by_role("button", name="ship now")).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile("Answer all"))).to_be_hidden()
    await expect(page).to_have_title("(2) Waiting on you · tiny-tasks")
    if screenshots:
        await shoot(alice, f"{url}/ui", "inbox", "li.interrupt")

    # The schema form: its default shown, the browser refuses what the schema refuses.
    note = budget.get_by_label("Note for the buyer")
    await expect(note).to_have_value("within the quarterly limit")
    amount = budget.get_by_label("Amount (EUR)")
    await amount.fill("0")
    await budget.get_by_role("button", name="Answer", exact=True).click()
    assert await amount.evaluate("field => field.validity.rangeUnderflow") is True
    assert (await stored(url, "order-1"))["status"] == "paused"
    await amount.fill("1200")
    await budget.get_by_role("button", name="Answer", exact=True).click()

    # It leaves the inbox without a reload; the other one is still there, and pending.
    await expect(page.locator("li.interrupt")).to_have_count(1)
    await expect(shipping).to_have_count(1)
    assert await page.evaluate("window.__sameDocument") is True
    run = await stored(url, "order-1")
    assert [(p["id"], p["value"]["question"]) for p in run["pending"]] == [
        ("purchase/ask_shipping#1/interrupt#0", "Ship a laptop now?")
    ]
    assert run["answered_by"] == {"purchase/ask_budget#0/interrupt#0": "alice"}

    # On the run's page, the quick answer completes it: partials and result show live.
    await page.goto(f"{url}/ui/runs/order-1")
    await page.evaluate("window.__sameDocument = true")
    partials = page.locator("ol[data-partials] li pre")
    # A saver without the stream log (`load_partials`) has no partials to show but those
    # a watcher catches as they are made: here the run may end before the page follows it.
    everything = ['"quote received for a laptop"', '"ordering a laptop for 1200 EUR"']
    await expect(partials).to_have_text(replayed(saver, everything[:1]))
    await page.get_by_role("button", name="ship now").click()
    if hasattr(saver, "load_partials"):
        await expect(partials).to_have_text(everything)
    result = page.locator("[data-result]")
    await expect(result).to_contain_text('"shipping": "ship now"')
    await expect(result).to_contain_text('"amount": 1200')
    await expect(page.locator(".page-head .badge")).to_have_text("done")
    assert await page.evaluate("window.__sameDocument") is True
    timeline = page.locator("ol.timeline > li .what")
    await expect(timeline).to_have_text(
        [
            "Started",
            "Answered",
            "Task finished (0 partials)",
            "Answered",
            "Task finished (0 partials)",
            "Done",
        ]
    )
    answered = page.locator("ol.timeline > li.moment-answer")
    await expect(answered.nth(0)).to_contain_text("by alice")
    await expect(answered.nth(1)).to_contain_text("by alice")
    await expect(page.get_by_role("heading", name="Nothing is waiting on you")).to_have_count(0)
    if screenshots:
        await shoot(alice, f"{url}/ui/runs/order-1", "run", "[data-result]")
    done = await stored(url, "order-1")
    assert (done["status"], done["result"]["budget"]) == (
        "done",
        {"amount": 1200, "note": "within the quarterly limit"},
    )
    await alice.close()


async def test_all_pending_interrupts_of_a_run_are_answered_together(
    browser: Browser, server: tuple[str, Any]
) -> None:
    url, _ = server
    await start(url, "release", None, "rel-1")
    context = await user(browser, "alice")
    page = await context.new_page()
    await page.goto(f"{url}/ui/runs/rel-1")
    both = page.get_by_role("button", name="Answer all 2 together")
    await expect(both).to_be_visible()
    name = page.get_by_label("Release name")
    await name.fill("x")  # too short for the schema: the browser says so, nothing is sent
    await page.get_by_label("Answer (JSON)").fill('["stable"')
    await both.click()
    assert await name.evaluate("field => field.validity.valid") is False
    assert (await stored(url, "rel-1"))["status"] == "paused"
    await name.fill("spring-cleanup")
    tags = page.get_by_label("Answer (JSON)")
    await tags.fill('["stable"')
    assert await tags.evaluate("field => field.validationMessage") == "This is not valid JSON."
    await tags.fill('["stable", "lts"]')
    await both.click()
    await expect(page.locator("[data-result]")).to_have_text(
        '[\n  "spring-cleanup",\n  [\n    "stable",\n    "lts"\n  ]\n]'
    )
    run = await stored(url, "rel-1")
    assert (run["result"], run["answered_by"]) == (
        ["spring-cleanup", ["stable", "lts"]],
        {"release/ask_name#0/interrupt#0": "alice", "release/ask_tags#1/interrupt#0": "alice"},
    )
    await context.close()


async def test_two_people_answer_one_interrupt_the_second_sees_who_won(
    browser: Browser, server: tuple[str, Any]
) -> None:
    url, _ = server
    await start(url, "sign_off", "contract.pdf", "doc-1")
    alice, bob = await user(browser, "alice"), await user(browser, "bob")
    pages = []
    for context in (alice, bob):
        page = await context.new_page()
        await page.goto(f"{url}/ui")
        await expect(page.locator("li.interrupt")).to_have_count(1)
        pages.append(page)
    alice_page, bob_page = pages
    await bob_page.get_by_label("Answer (JSON)").fill('{"verdict": "reject", "why": "typo"}')
    await alice_page.get_by_label("Answer (JSON)").fill('"approved"')
    await alice_page.get_by_role("button", name="Answer", exact=True).click()
    await expect(alice_page.locator("li.interrupt")).to_have_count(0)

    # Bob's form stays (he was typing in it) and says it moved on; sending it shows who won.
    bob_item = bob_page.locator("li.interrupt")
    await expect(bob_item).to_have_class(re.compile(r"\bstale\b"))
    await bob_page.get_by_role("button", name="Answer", exact=True).click()
    conflict = bob_item.locator("[data-notice]")
    await expect(conflict).to_contain_text("Someone else answered first")
    await expect(conflict).to_contain_text("alice answered sign_off/interrupt#0 first")
    await expect(conflict.locator("pre")).to_have_text('"approved"')
    await expect(bob_page.get_by_label("Answer (JSON)")).to_have_value(
        '{"verdict": "reject", "why": "typo"}'
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    await bob_page.screenshot(path=SHOTS / "conflict-desktop.png", full_page=True)
    await bob_page.set_viewport_size(PHONE)
    await bob_page.screenshot(path=SHOTS / "conflict-phone.png", full_page=True)
    empty = bob_page.get_by_role("heading", name="Nothing is waiting on you")
    await expect(empty).to_be_hidden()  # while the form is kept
    await conflict.get_by_role("button", name="Dismiss").click()
    await expect(bob_item).to_have_count(0)
    await expect(empty).to_be_visible()
    run = await stored(url, "doc-1")
    assert (run["status"], run["result"], run["answered_by"]) == (
        "done",
        "contract.pdf: approved",
        {"sign_off/interrupt#0": "alice"},
    )
    await alice.close()
    await bob.close()


async def test_a_hostile_value_is_shown_as_text(browser: Browser, server: tuple[str, Any]) -> None:
    url, _ = server
    await start(url, "hostile", None, "evil-1")
    context = await user(browser, "alice")
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    for path, shown in (("/ui", "li.interrupt"), ("/ui/runs/evil-1", "ol[data-partials] li")):
        await page.goto(url + path)
        await expect(page.locator(shown).first).to_contain_text("<script>window.__pwned = 1")
        assert await page.evaluate("window.__pwned === undefined") is True
        assert await page.locator("main script, main img").count() == 0
    choices = page.get_by_role("group", name="Quick answers").get_by_role("button")
    await expect(choices).to_have_text([HOSTILE, "fine"])
    await page.get_by_role("heading", name=HOSTILE).wait_for()
    await choices.first.click()
    await expect(page.locator(".page-head .badge")).to_have_text("done")
    await expect(page.locator("[data-result]")).to_have_text(json.dumps(HOSTILE))
    assert await page.evaluate("window.__pwned === undefined") is True
    assert dialogs == []
    await context.close()


async def test_runs_are_filtered_cancelled_and_deleted_after_a_confirmation(
    browser: Browser, server: tuple[str, Any]
) -> None:
    url, _ = server
    for number in range(3):
        await start(url, "sign_off", f"memo-{number}.txt", f"memo-{number}")
    await start(url, "purchase", "a desk", "order-2")
    context = await user(browser, "alice")
    page = await context.new_page()
    await page.goto(f"{url}/ui/runs")
    rows = page.locator("table.runs tbody tr td:first-child")
    await expect(rows).to_have_text(["order-2", "memo-2", "memo-1", "memo-0"])
    await page.get_by_label("Task").select_option("sign_off")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_text(["memo-2", "memo-1", "memo-0"])
    await shoot(context, f"{url}/ui/runs", "runs", "table.runs")

    await page.get_by_role("link", name="memo-1").click()
    await page.get_by_text("Cancel this run…").click()
    await page.get_by_role("button", name="Yes, cancel the run memo-1").click()
    await expect(page.locator(".page-head .badge")).to_have_text("cancelled")
    await expect(page.locator(".outcome")).to_contain_text("RunCancelled")
    await page.get_by_text("Delete this run…").click()
    await page.get_by_role("button", name="Yes, delete the run memo-1").click()
    await expect(page).to_have_url(f"{url}/ui/runs")
    await expect(rows).to_have_text(["order-2", "memo-2", "memo-0"])
    await page.get_by_label("Status").select_option("cancelled")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("heading", name="No runs match")).to_be_visible()
    async with httpx.AsyncClient(headers={"x-user": "api"}) as http:
        assert (await http.get(f"{url}/runs/memo-1")).status_code == 404
    await context.close()


async def test_forms_need_the_csrf_token_and_pages_the_auth_hook(
    server: tuple[str, Any],
) -> None:
    url, saver = server
    await start(url, "sign_off", "note.txt", "doc-2")
    before = await saver.load("doc-2")
    form = {"site": "sign_off/interrupt#0", "j:sign_off/interrupt#0": '"yes"'}
    headers = {"content-type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(headers={"x-user": "mallory"}) as http:
        for sent in ({}, {"csrf": "x" * 43}):  # a form from another site: another token
            await http.get(f"{url}/ui")  # this browser's cookie
            for action in ("answer", "cancel", "delete"):
                response = await http.post(
                    f"{url}/ui/runs/doc-2/{action}", data={**form, **sent}, headers=headers
                )
                assert (response.status_code, "security token" in response.text) == (403, True)
        assert await saver.load("doc-2") == before
        page = await http.get(f"{url}/ui")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        response = await http.post(
            f"{url}/ui/runs/doc-2/answer", data={**form, "csrf": token[1]}, headers=headers
        )
        assert (response.status_code, response.headers["location"]) == (303, "/ui/runs/doc-2")
    assert (await stored(url, "doc-2"))["answered_by"] == {"sign_off/interrupt#0": "mallory"}


async def test_answers_are_checked_on_the_server_too(server: tuple[str, Any]) -> None:
    url, saver = server
    await start(url, "purchase", "a chair", "order-3")
    budget, shipping = "purchase/ask_budget#0/interrupt#0", "purchase/ask_shipping#1/interrupt#0"
    async with httpx.AsyncClient(headers={"x-user": "alice"}) as http:
        page = await http.get(f"{url}/ui/runs/order-3")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        before = await saver.load("order-3")
        form = [
            ("csrf", token[1]),
            ("site", budget),
            (f"a:{budget}:amount", "-3"),
            (f"a:{budget}:note", "<b>keep me</b>"),
            ("site", shipping),
            (f"q:{shipping}", "7"),
        ]
        headers = {"content-type": "application/x-www-form-urlencoded"}
        response = await http.post(
            f"{url}/ui/runs/order-3/answer",
            content=urlencode(form),
            headers={**headers, "accept": "application/json"},
        )
        assert (response.status_code, response.json()["errors"]) == (
            422,
            {
                f"a:{budget}:amount": "Enter 1 or more.",
                f"q:{shipping}": "That choice is not one this interrupt offers.",
            },
        )
        # Without the script: the page again, with the errors and what was typed.
        response = await http.post(
            f"{url}/ui/runs/order-3/answer", content=urlencode(form), headers=headers
        )
        assert response.status_code == 422
        assert 'value="&lt;b&gt;keep me&lt;/b&gt;"' in response.text
        assert ">Enter 1 or more.</p>" in response.text
        assert await saver.load("order-3") == before
    async with httpx.AsyncClient() as anonymous:
        for path in ("/ui", "/ui/runs", "/ui/runs/doc-2", "/ui/feed"):
            response = await anonymous.get(url + path)
            assert (response.status_code, "send x-user" in response.text) == (401, True)


async def test_an_interrupt_is_answered_with_the_keyboard_alone(
    browser: Browser, server: tuple[str, Any]
) -> None:
    url, _ = server
    await start(url, "sign_off", "plan.md", "doc-3")
    context = await user(browser, "alice", PHONE)
    page = await context.new_page()
    await page.goto(f"{url}/ui")
    focused = "() => document.activeElement.getAttribute('aria-label') || "
    focused += (
        "document.activeElement.labels?.[0]?.textContent || document.activeElement.textContent"
    )
    await page.keyboard.press("Tab")
    assert await page.evaluate(focused) == "Skip to content"
    await page.keyboard.press("Enter")
    stops = []
    for _ in range(12):
        await page.keyboard.press("Tab")
        stops.append((await page.evaluate(focused)).strip())
        if stops[-1].startswith("Answer (JSON)"):
            break
    assert stops == ["sign_off", "The interrupt's value", "Answer (JSON) *"]
    await page.keyboard.type('"looks good"')
    await page.keyboard.press("Tab")
    assert await page.evaluate(focused) == "Answer"
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Nothing is waiting on you")).to_be_visible()
    assert (await stored(url, "doc-3"))["result"] == "plan.md: looks good"
    await context.close()


async def test_a_runs_timeline_shows_its_steps_with_duration_and_error(
    server: tuple[str, Any],
) -> None:
    url, _ = server
    async with httpx.AsyncClient(headers={"x-user": "ops"}) as http:
        response = await http.post(
            f"{url}/runs",
            json={"task": "restock", "input": "<b>bolts</b>", "run_id": "stock-1"},
            headers={"accept": "text/event-stream"},
        )
        assert "event: error" in response.text
        page = (await http.get(f"{url}/ui/runs/stock-1")).text
    moments = re.findall(
        r'<li class="moment moment-(\w+)"><p><span class="what">([^<]+)</span>', page
    )
    assert moments == [
        ("input", "Started"),
        ("step", "Step"),
        ("step", "Step failed"),
        ("outcome", "Failed"),
    ]
    assert re.search(r"restock/fetch_price#0</code> · \d+ ms · <time", page)
    # The outcome, and in the timeline the failed step and the run's end: escaped.
    assert page.count("<strong>LookupError</strong>: no stock for &lt;b&gt;bolts&lt;/b&gt;<") == 3
    assert "Started</span> by <strong>ops</strong>" in page
    assert '<span class="badge status-failed">failed</span>' in page
    assert '<pre class="value">&quot;price 1200&quot;</pre>' in page


async def test_an_interrupt_with_a_deadline_shows_it(server: tuple[str, Any]) -> None:
    url, _ = server
    await start(url, "deploy", None, "deploy-1")
    run = await stored(url, "deploy-1")
    async with httpx.AsyncClient(headers={"x-user": "ops"}) as http:
        inbox = (await http.get(f"{url}/ui")).text
    # On the run's group and on the interrupt itself: the stored deadline, in words.
    found = re.findall(
        r'answer by (?:</strong>)?<time [^>]*data-ts="([0-9.]+)"[^>]*>([^<]+)<', inbox
    )
    found += re.findall(r'answer by <time [^>]*data-ts="([0-9.]+)"[^>]*>([^<]+)<', inbox)
    assert sorted(set(found)) == [(f"{run['wake_at']:.3f}", "in 3 h")]
    assert inbox.count(f'data-ts="{run["wake_at"]:.3f}"') == 2
