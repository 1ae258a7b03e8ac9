"""The web side: the aiohttp app, webhooks, /api, OAuth tokens, lookups, metrics page, console."""
