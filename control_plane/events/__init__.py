"""Events back to the control plane: ``botfactory events-consume`` reads the runtimes' events stream and stores
messages, chat users, conversations, delivery results and token usage in PostgreSQL, in batches, idempotently.

``consumer.py`` owns Redis and the transaction (read, ingest, commit, then ack); ``service.py`` holds the rules
(what an event means for chat users, conversations, broadcasts); ``repository.py`` holds every SQL statement.
"""
