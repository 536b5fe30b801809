"""An agent streamed to a browser with EventSource, paused for approval, resumed by a POST.

    python examples/http_approval.py serve     # then open http://127.0.0.1:8000
    python examples/http_approval.py           # the same exchange, driven with httpx

Needs `pip install 'tiny-tasks[http]'`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from tiny_tasks import interrupt, task
from tiny_tasks.http import TaskApp
from tiny_tasks.savers import SqliteSaver


@task
async def agent(question: str) -> AsyncIterator[str]:
    for word in f"drafting an answer to: {question}".split():
        await asyncio.sleep(0.05)  # a model, streaming
        yield word
    verdict = interrupt({"approve": "send this answer?"})
    yield "sent" if verdict == "yes" else "discarded"


PAGE = """<!doctype html><meta charset="utf-8"><title>agent</title>
<pre id="out"></pre><button id="yes" hidden>approve</button>
<script>
const out = document.getElementById("out"), yes = document.getElementById("yes");
async function follow(response) {           // read the SSE body of a POST
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read(); if (done) return;
    buffer += value;
    for (let end; (end = buffer.indexOf("\\n\\n")) >= 0; buffer = buffer.slice(end + 2)) {
      const lines = Object.fromEntries(buffer.slice(0, end).split("\\n")
        .map(l => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]));
      if (lines.event === "partial") out.textContent += JSON.parse(lines.data) + " ";
      if (lines.event === "interrupt") ask(JSON.parse(lines.data));
    }
  }
}
function ask(pending) { yes.hidden = false; yes.dataset.id = pending.id; }
const runId = crypto.randomUUID();
fetch("/api/runs", {method: "POST", headers: {"Content-Type": "application/json"},
  body: JSON.stringify({task: "agent", input: "what is tiny-tasks?", run_id: runId})})
  .then(() => {  // the run exists: follow it (a reload would follow it from where it is)
    const source = new EventSource(`/api/runs/${runId}/stream`);
    source.addEventListener("partial", e => out.textContent += JSON.parse(e.data) + " ");
    source.addEventListener("interrupt", e => { source.close(); ask(JSON.parse(e.data)); });
  });
yes.onclick = async () => {
  yes.hidden = true;
  follow(await fetch(`/api/runs/${runId}/resume`, {method: "POST",
    headers: {"Content-Type": "application/json", "Accept": "text/event-stream"},
    body: JSON.stringify({answers: {[yes.dataset.id]: "yes"}})}));
};
</script>"""


def build(saver: SqliteSaver) -> Starlette:
    async def page(request: object) -> HTMLResponse:
        return HTMLResponse(PAGE)

    return Starlette(routes=[Route("/", page), Mount("/api", TaskApp([agent], saver))])


async def demo() -> None:
    """What the page does, with httpx: start and follow, then approve and follow."""
    folder = tempfile.TemporaryDirectory()
    saver = SqliteSaver(f"{folder.name}/runs.db")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build(saver), log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    stream = {"Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=base) as http:
        body = {"task": "agent", "input": "what is tiny-tasks?", "run_id": "demo"}
        interrupt_id = None
        async with http.stream("POST", "/runs", json=body, headers=stream) as response:
            async for kind, data in events(response):
                if kind == "partial":
                    print(data)
                elif kind == "interrupt":
                    print("paused:", data["value"])
                    interrupt_id = data["id"]
        answer = {"answers": {interrupt_id: "yes"}}
        async with http.stream(
            "POST", "/runs/demo/resume", json=answer, headers=stream
        ) as response:
            async for kind, data in events(response):
                if kind in ("partial", "done"):
                    print(kind, data)
    server.should_exit = True
    await serving
    await saver.close()
    folder.cleanup()


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, object]]:
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind != "ready":
            yield kind, json.loads(line[6:])


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        uvicorn.run(build(SqliteSaver("http_approval.db")), host="127.0.0.1", port=8000)
    else:
        asyncio.run(demo())
