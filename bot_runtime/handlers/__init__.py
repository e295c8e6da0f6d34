"""Handlers for inbound kinds that are not customer channels (channels live in ``bot_runtime.channels``)."""
