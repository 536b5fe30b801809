"""tiny-tasks."""
