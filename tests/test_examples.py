"""Every README example is a file in examples/; each runs here as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "code_change.py": [
        "paused: ship?",
        "refused at job/charge#0 - recorded a call with arguments hash b7d0be1813ca01ea - found"
        " a call with arguments hash 962eea4e830dc068 (other arguments)",
        "the run is still paused on ['job/interrupt#1']",
        "the old code finishes it: yes",
        "charges made: [1]",
    ],
    "quickstart.py": [
        "processing job",
        "interrupt -> {'message': 'wait'}",
        "done: resume-data",
    ],
    "nested_streaming.py": [
        "['processing task']",
        "['processing task', 'done: task']",
        "result: ['processing task', 'done: task', 'aggregate done']",
    ],
    "nested_interrupts.py": [
        "None Interrupt(value='stop', id='outer/inner#0/interrupt#0')",
        "resumed with go None",
    ],
    "parallel_pauses.py": [
        "waiting: review/approve#0/interrupt#0 approve invoice?",
        "waiting: review/approve#1/interrupt#0 approve refund?",
        "still waiting: review/approve#0/interrupt#0",
        "{'invoice': True, 'refund': False}",
    ],
    "service.py": [
        "submitted order-42: queued",
        "sleeping (a timer)",
        "sleeping (waiting for a message)",
        "sent a message on 'courier'",
        "paused on {'ship': 'lamp', 'via': 'bike'} (deadline set)",
        "done",
        "outcome: {'receipt': 'receipt-1', 'courier': 'bike', 'approval': 'approved by default'}",
        "called again, nothing runs: True, charges ['lamp']",
    ],
    "steps.py": [
        "charged 30: receipt-1",
        "paused: shipping address?",
        "shipping to 1 Main St",
        "charges made: [30]",
    ],
    "http_approval.py": [
        "drafting",
        "an",
        "answer",
        "to:",
        "what",
        "is",
        "tiny-tasks?",
        "paused: {'approve': 'send this answer?'}",
        "partial sent",
        "done {'result': None}",
    ],
    "llm_stream.py": [
        "<answer",
        "to",
        "what",
        "is",
        "tiny-tasks>",
        "paused: {'question': 'send this answer?'}",
        "<answer",
        "to",
        "follow-up>",
        "model calls: ['what is tiny-tasks', 'follow-up']",
    ],
}


def run_example(name: str, *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent / "src")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_prints_what_the_readme_says(name: str) -> None:
    assert run_example(name) == EXPECTED[name]


def test_every_example_is_tested() -> None:
    files = {path.name for path in EXAMPLES.glob("*.py")}
    assert files == {*EXPECTED, "demo.py"}


def test_demo_resumes_the_run_in_a_second_process() -> None:
    lines = run_example("demo.py")
    assert lines[0] == "process first:"
    first = lines[1 : lines.index("process second:")]
    second = lines[lines.index("process second:") + 1 :]
    first_pid = {line.split("]")[0] for line in first}
    second_pid = {line.split("]")[0] for line in second}
    assert len(first_pid) == 1
    assert len(second_pid) == 1
    assert first_pid != second_pid
    words = ["tiny-tasks", "now", "resumes", "workflows", "in", "another", "process"]
    assert [line.split("] ", 1)[1] for line in first] == [
        "calling the model (a side effect, recorded once)",
        *words,
        "paused: {'approve': 'tiny-tasks now resumes workflows in another process'} -> exiting",
    ]
    # the second process neither calls the model again nor repeats a delivered word
    assert [line.split("] ", 1)[1] for line in second] == ["published (approved)"]
