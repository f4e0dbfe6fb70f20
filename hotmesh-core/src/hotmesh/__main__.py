"""``python -m hotmesh``: see :mod:`hotmesh.cli`."""

from hotmesh.cli import main

raise SystemExit(main())
