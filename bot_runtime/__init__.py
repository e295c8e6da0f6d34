"""Per-tenant bot runtime: reads its config from Redis and answers customers on every channel."""
