"""The inbox under `/ui` (issue 12): every pending interrupt across runs, answered in the
browser; the runs with their timelines. Server-rendered pages plus one small script
and one style sheet (package data). See docs/inbox.md."""

from __future__ import annotations

from ._routes import ui_routes

__all__ = ["ui_routes"]
