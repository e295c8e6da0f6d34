"""Channels: connecting a bot to Telegram (and later WhatsApp and Instagram), the inbound webhooks, and their health.

``endpoints`` is the owners' API, ``webhooks`` the unauthenticated endpoints the messengers call, ``service`` the
rules, ``repository`` the SQL, ``telegram`` the control plane's few Bot API calls, ``tasks`` the health check job.
"""
