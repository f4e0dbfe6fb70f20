"""``python -m hotmesh_postgres``: see :mod:`hotmesh_postgres._cli`."""

from __future__ import annotations

import sys

from hotmesh_postgres._cli import main

if __name__ == "__main__":
    sys.exit(main())
