"""The OpenAPI document of a `TaskApp` (served at `/openapi.json`, checked into
docs/openapi.json; a test checks that the copy is current)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not JSON, or not a JSON object (MalformedRequestError).",
        401: "The auth hook refused the request (AuthenticationError).",
        403: "The auth hook denied access (AccessDeniedError).",
        404: "Unknown run (NoCheckpointError) or task (UnknownTaskError).",
        409: "Conflict: another input for this run (InputMismatchError), another task "
        "(TaskMismatchError), or the interrupt was answered first (InterruptAnsweredError, "
        "with `answered`: what won and who sent it).",
        412: "If-Match is not the run's version (VersionMismatchError).",
        413: "The body is larger than the app's limit (RequestTooLargeError).",
        422: "A field has the wrong type or value, or the input does not fit the task "
        "(InvalidRequestError, InvalidRunIdError).",
        503: "The store failed (StorageError); nothing was changed.",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 255},
}
_AFTER = [
    {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": -1},
        "description": "The id of the last partial event received: the stream resumes after it.",
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": -1},
        "description": "As Last-Event-ID (which wins when both are given).",
    },
]
_CANCEL_ON_DISCONNECT = {
    "name": "cancel_on_disconnect",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Cancel the run if this client leaves before the stream ends.",
}
_PAGE = [
    {"name": "task", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
]
_STREAM = {
    "description": "Server-Sent Events: `ready` (data: run_id, status, after; id: after), "
    "then `partial` events (id: the partial's position in the run's stream, data: its "
    "value), then the end: one `interrupt` event per pending interrupt (data: id, value), "
    "or `done` (data: result), `error` or `cancelled` (data: type, message). A `: ping` "
    "comment every 15 s while idle.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["type", "message"],
        "properties": {
            "type": {"type": "string", "description": "The exception's class name."},
            "message": {"type": "string"},
            "run_id": {"type": "string"},
            "answered": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"value": {}, "by": {"type": ["string", "null"]}},
                },
            },
        },
    },
    "StartRun": {
        "type": "object",
        "required": ["task"],
        "additionalProperties": False,
        "properties": {
            "task": {"type": "string"},
            "input": {"description": "The task's input (JSON)."},
            "run_id": {"type": "string", "maxLength": 255},
        },
    },
    "Resume": {
        "type": "object",
        "additionalProperties": False,
        "description": "Exactly one of `answers` and `resume`.",
        "properties": {
            "answers": {"type": "object", "description": "interrupt id -> answer"},
            "resume": {"description": "The answer to the one pending interrupt."},
        },
    },
    "Message": {
        "type": "object",
        "required": ["topic"],
        "additionalProperties": False,
        "properties": {"topic": {"type": "string"}, "value": {}},
    },
    "PendingInterrupt": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "value": {}},
    },
    "Run": {
        "type": "object",
        "description": "The run as `get_run` shows it.",
        "properties": {
            "run_id": {"type": "string"},
            "task_name": {"type": "string"},
            "status": {"type": "string"},
            "version": {"type": "integer"},
            "input": {},
            "pending": {"type": "array", "items": _ref("PendingInterrupt")},
            "delivered": {"type": "integer"},
            "started_by": {"type": ["string", "null"]},
            "outcome": {"type": ["string", "null"], "description": "done, failed, cancelled"},
            "result": {},
            "error": {"type": ["array", "null"], "description": "[type, message]"},
            "cancel_requested": {"type": "boolean"},
            "lease_owner": {"type": ["string", "null"]},
            "lease_expires": {"type": ["number", "null"]},
            "wake_at": {"type": ["number", "null"]},
            "answered_by": {"type": "object", "additionalProperties": {"type": "string"}},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
    },
    "RunPage": {
        "type": "object",
        "properties": {
            "runs": {"type": "array", "items": {"type": "object"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "InterruptPage": {
        "type": "object",
        "properties": {
            "interrupts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "run_id": {"type": "string"},
                        "task_name": {"type": "string"},
                        "id": {"type": "string"},
                        "value": {},
                        "version": {"type": "integer"},
                        "created_at": {"type": "number"},
                        "updated_at": {"type": "number"},
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"]},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the endpoints (the same for every app)."""
    run = _json(_ref("Run"), "The run.")
    return {
        "openapi": "3.1.0",
        "info": {"title": "tiny-tasks", "version": "1"},
        "paths": {
            "/runs": {
                "post": {
                    "summary": "Start a run (or return the existing run of that id and input)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Used as the run id.",
                        },
                        *_AFTER,
                        _CANCEL_ON_DISCONNECT,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("StartRun")}},
                    },
                    "responses": {
                        "201": {
                            **run,
                            "description": "Started; with Accept: "
                            "text/event-stream, the run's event stream.",
                        },
                        "200": {**run, "description": "It existed with this input."},
                        **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                    },
                },
                "get": {
                    "summary": "List runs, newest first (keyset pagination)",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        *_PAGE,
                    ],
                    "responses": {
                        "200": _json(_ref("RunPage"), "A page of runs."),
                        **_errors(401, 403, 422, 503),
                    },
                },
            },
            "/runs/{run_id}": {
                "get": {
                    "summary": "One run: status, pending interrupts, who started and answered it",
                    "parameters": [_RUN_ID],
                    "responses": {
                        "200": {**run, "headers": {"ETag": {"schema": {"type": "string"}}}},
                        **_errors(401, 403, 404, 422, 503),
                    },
                },
                "delete": {
                    "summary": "Delete a run",
                    "parameters": [_RUN_ID],
                    "responses": {
                        "204": {"description": "Deleted."},
                        **_errors(401, 403, 404, 422, 503),
                    },
                },
            },
            "/runs/{run_id}/stream": {
                "get": {
                    "summary": "The run's events (SSE), resumable from any position",
                    "parameters": [_RUN_ID, *_AFTER, _CANCEL_ON_DISCONNECT],
                    "responses": {"200": _STREAM, **_errors(401, 403, 404, 422, 503)},
                },
            },
            "/runs/{run_id}/resume": {
                "post": {
                    "summary": "Answer the run's interrupts and continue it",
                    "parameters": [
                        _RUN_ID,
                        {
                            "name": "If-Match",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "The run's version (its ETag).",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Resume")}},
                    },
                    "responses": {
                        "200": run,
                        **_errors(400, 401, 403, 404, 409, 412, 413, 422, 503),
                    },
                },
            },
            "/runs/{run_id}/cancel": {
                "post": {
                    "summary": "Ask for the run to be cancelled (it unwinds with RunCancelled)",
                    "parameters": [_RUN_ID],
                    "responses": {
                        "202": {**run, "description": "The cancel is requested."},
                        **_errors(401, 403, 404, 422, 503),
                    },
                },
            },
            "/runs/{run_id}/send": {
                "post": {
                    "summary": "Send a message to the run (it receives it with ctx.recv)",
                    "parameters": [_RUN_ID],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Message")}},
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "run_id": {"type": "string"},
                                    "message_id": {"type": "integer"},
                                },
                            },
                            "Stored; a run waiting on the topic is woken.",
                        ),
                        **_errors(400, 401, 403, 404, 413, 422, 503),
                    },
                },
            },
            "/interrupts": {
                "get": {
                    "summary": "Every pending interrupt across runs, oldest run first",
                    "parameters": _PAGE,
                    "responses": {
                        "200": _json(_ref("InterruptPage"), "A page of interrupts."),
                        **_errors(401, 403, 422, 503),
                    },
                },
            },
        },
        "components": {"schemas": _SCHEMAS},
    }
