"""BotFactory test suite (real PostgreSQL and Redis)."""
