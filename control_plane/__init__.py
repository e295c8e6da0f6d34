"""BotFactory control plane: the web app and REST API that own tenants, bots, knowledge and billing state."""
