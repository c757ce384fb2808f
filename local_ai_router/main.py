"""`local-ai-router`: the router's CLI, whose `serve` runs the router with its plugins.

The plugins today are the Mattermost bot, when MATTERMOST_URL is set. Everything else (the app's
resources, the event loop, signals, graceful shutdown) is the router's own (router.http).
"""

from __future__ import annotations

from router import cli
from router.http.app import Plugin, create_app
from router.http.serving import run
from router.settings import Settings


def plugins(settings: Settings) -> list[Plugin]:
    """The plugins `settings` ask for."""
    if not settings.bot_enabled:
        return []
    from bot.plugin import BotPlugin  # the bot's dependencies load only when it is wanted

    return [BotPlugin(settings)]


def serve(settings: Settings) -> None:
    run(create_app(settings, plugins(settings)), settings)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, serve=serve)
