"""Schema version 5: room on each ``jobs`` page for the row's next version.

Every workflow step updates its job row. With the default fillfactor (100) a page is full, so
the new version goes to another page and every index gets a new entry (59% HOT updates measured
in the bloat soak); leaving a fifth of each page free keeps most updates on the page (HOT), which
keeps the indexes and the table from growing. Applies to pages written from now on; never
destructive.
"""

from __future__ import annotations

JOBS_FILLFACTOR = r"""
ALTER TABLE @S@.jobs SET (fillfactor = 80);
"""
