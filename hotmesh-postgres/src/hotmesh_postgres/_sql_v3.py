"""Schema version 3: waiters indexed by job, so the expiry sweep removes an expired job's waiters.

A workflow that expires (or is interrupted) while waiting for a signal left its ``waiters`` row
behind for good; the sweep now deletes it with the job, and needs this index to find it.
"""

from __future__ import annotations

WAITERS_BY_JOB = r"""
CREATE INDEX IF NOT EXISTS waiters_job ON @S@.waiters (job_id);
"""
