"""Background jobs on RQ: queues, enqueue-after-commit, the async job runner, worker and scheduler commands."""
