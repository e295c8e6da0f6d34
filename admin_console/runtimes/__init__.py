"""The operator console for tenant runtimes: list, start, stop, restart, log tails, and the live hosts.

Runtime state comes only from Redis, where the host agents publish it (``bot_runtime/host/agent.py``); the
operations themselves are ``control_plane.runtimes.operations``, shared with ``botfactory runtimes ...``. The one
database read is the tenants' display names.
"""
