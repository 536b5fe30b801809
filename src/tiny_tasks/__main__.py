"""`python -m tiny_tasks`: the operator command line."""

from .cli import main

raise SystemExit(main())
