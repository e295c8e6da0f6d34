"""Website widget: ``/widget.js``, its public API (config, messages, history, SSE stream) and the bot page section.

Files: ``endpoints.py`` (HTTP, CORS), ``service.py`` (origins, languages, accepting a message, history),
``repository.py`` (the one bot lookup by public id), ``replies.py`` (the per-process Redis stream reader that feeds
SSE connections), ``schemas.py``, ``errors.py``, ``section.py`` (the bot page section), ``assets.py`` (widget.js).
"""
