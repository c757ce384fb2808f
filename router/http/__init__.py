"""The HTTP surface: the aiohttp app factory, the wire APIs' handlers, OpenAPI, the dashboard."""
