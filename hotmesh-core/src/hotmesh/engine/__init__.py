"""The engine (private to hotmesh-core): routers, scheduler, quorum, durations.

DESIGN.md §2: every state change is a message; transitions are atomic and idempotent; a message
is acked only after its effects.
"""
