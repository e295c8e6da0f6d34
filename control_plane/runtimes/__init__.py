"""The control plane's side of the tenant runtimes: config publishing, the desired set, wake-ups, operator commands.

The runtimes themselves (``bot_runtime``) and their host agent read only Redis; this package is where PostgreSQL
state becomes the Redis documents of ``bot_runtime.contract``.
"""
