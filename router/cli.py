"""The router's command line: `serve`, and the operator commands for a running router (rich
tables). `local-ai-router` is this CLI with the bot added to `serve` (local_ai_router.main)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from router.settings import ConfigError, Settings

console = Console()
log = logging.getLogger(__name__)

Serve = Callable[[Settings], None]  # runs the server process until it is told to stop


def _router_url() -> str:
    return os.environ.get("ROUTER_URL", "http://127.0.0.1:8000").rstrip("/")


def _client() -> httpx.Client:
    headers = {}
    token = os.environ.get("ROUTER_ADMIN_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=_router_url(), headers=headers, timeout=30)


def cmd_serve(args: argparse.Namespace, serve: Serve) -> int:
    from router.logs import setup_logging

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = Settings.from_env(**overrides)
    setup_logging(settings.log_level)
    serve(settings)
    return 0


def serve_router(settings: Settings) -> None:
    """The router alone, with no plugins: what `python -m router.cli serve` runs. The
    `local-ai-router` command serves it with the bot (local_ai_router.main)."""
    from router.http.app import create_app
    from router.http.serving import run

    if settings.bot_enabled:
        log.warning("MATTERMOST_URL is set, but this command serves the router without the bot: "
                    "run `local-ai-router serve` or `python -m local_ai_router serve` (after an "
                    "upgrade from a version whose console script was router.cli, reinstall: "
                    "pip install -e .)")
    run(create_app(settings), settings)


def cmd_status(_args: argparse.Namespace) -> int:
    with _client() as client:
        status = client.get("/status").json()
    console.print(f"Gaming mode: [bold]{'ON' if status['gaming_mode'] else 'OFF'}[/bold]   "
                  f"thresholds: small < {status['small_token_threshold']}, "
                  f"medium < {status['medium_token_threshold']}")
    table = Table(title="Backends")
    for column in ("backend", "url", "health", "models", "latency ms", "last error"):
        table.add_column(column)
    for b in status["backends"]:
        health = "[green]up[/green]" if b["healthy"] else "[red]down[/red]"
        if b["gated"]:
            health += " [yellow](gated)[/yellow]"
        models = ", ".join(f"{m['id']}" + (f" ({m['max_model_len']})" if m.get("max_model_len") else "")
                           for m in b["models"])
        name = b["name"] if b.get("label", b["name"]) == b["name"] else f"{b['name']} ({b['label']})"
        table.add_row(name, b["url"], health, models or "-",
                      str(b["latency_ms"] or "-"), b["last_error"] or "")
    console.print(table)
    return 0


def cmd_decisions(args: argparse.Namespace) -> int:
    from router.store import db, queries

    settings = Settings.from_env()
    engine = db.make_engine(settings.database_url)
    rows = queries.recent_decisions(engine, args.last)
    engine.dispose()
    table = Table(title=f"Last {len(rows)} routing decisions")
    for column in ("time", "request", "source", "client", "model", "backend", "reason", "tokens",
                   "status", "fb", "ms", "error"):
        table.add_column(column, no_wrap=column not in ("error", "client"))
    for row in rows:
        created: datetime = row.created_at
        table.add_row(created.strftime("%m-%d %H:%M:%S"), row.request_id[:8], row.source,
                      row.client or "", row.requested_model or "auto", row.backend or "-",
                      row.reason or "", str(row.estimated_tokens or ""), str(row.status_code),
                      str(row.fallback_attempts), f"{row.latency_ms or 0:.0f}", (row.error or "")[:80])
    console.print(table)
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    headers = {"X-Force-Big": "true"} if args.force_big else {}
    with _client() as client:
        response = client.post("/v1/route", json=body, headers=headers)
    data = response.json()
    if response.status_code != 200:
        console.print(f"[red]{data['error']['message']}[/red]")
        return 1
    table = Table(title="Routing decision (dry run)")
    table.add_column("field")
    table.add_column("value")
    for key in ("backend", "model", "reason", "estimated_tokens", "gaming_mode", "force_big",
                "candidates", "skipped"):
        table.add_row(key, str(data.get(key)))
    console.print(table)
    return 0


def cmd_gaming(args: argparse.Namespace) -> int:
    with _client() as client:
        if args.state == "status":
            response = client.get("/admin/gaming-mode")
        else:
            body: dict[str, Any] = {"enabled": args.state == "on"}
            if args.backend:
                body["backend"] = args.backend
            response = client.post("/admin/gaming-mode", json=body,
                                   headers={"X-Actor": f"cli:{os.environ.get('USER', 'unknown')}"})
    data = response.json()
    if response.status_code != 200:
        console.print(f"[red]{data['error']['message']}[/red]")
        return 1
    if "message" in data:
        console.print(data["message"])
    console.print(f"Gaming mode: [bold]{'ON' if data['enabled'] else 'OFF'}[/bold]")
    per_backend = data.get("backends") or {}
    if len(per_backend) > 1:
        for name, enabled in per_backend.items():
            console.print(f"  {name}: {'ON' if enabled else 'OFF'}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """`config check [FILE]`: validate the home-lab file and show what the router would use."""
    from router.config_view import check

    environ = dict(os.environ)
    path = args.file or environ.get("ROUTER_CONFIG")
    if path:
        environ["ROUTER_CONFIG"] = path
    try:
        tables = check(environ)
    except ConfigError as exc:
        console.print(f"[red]invalid configuration:[/red] {escape(str(exc))}", highlight=False)
        return 1
    for table in tables:
        console.print(table)
    console.print(f"[green]{path or 'the environment'}: OK[/green]", highlight=False)
    return 0


def cmd_db(_args: argparse.Namespace) -> int:
    from router.store import db

    settings = Settings.from_env()
    db.upgrade(settings.database_url)
    console.print(f"database {settings.database_url} is at the newest migration")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="local-ai-router", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the router (HTTP API, bot, scheduler)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=None)
    sub.add_parser("status", help="backend health and gaming mode").set_defaults(func=cmd_status)
    decisions = sub.add_parser("decisions", help="recent routing decisions from the database")
    decisions.add_argument("--last", type=int, default=20)
    decisions.set_defaults(func=cmd_decisions)
    route = sub.add_parser("route", help="where would this prompt go? (dry run)")
    route.add_argument("prompt")
    route.add_argument("--model", default="auto")
    route.add_argument("--force-big", action="store_true")
    route.set_defaults(func=cmd_route)
    gaming = sub.add_parser("gaming", help="gaming mode on|off|status")
    gaming.add_argument("state", choices=["on", "off", "status"])
    gaming.add_argument("backend", nargs="?", help="one gaming backend (default: all of them)")
    gaming.set_defaults(func=cmd_gaming)
    config = sub.add_parser("config", help="check the home-lab file (ROUTER_CONFIG)")
    config.add_argument("action", choices=["check"])
    config.add_argument("file", nargs="?", help="the TOML file (default: $ROUTER_CONFIG)")
    config.set_defaults(func=cmd_config)
    dbp = sub.add_parser("db", help="database maintenance")
    dbp.add_argument("action", choices=["upgrade"])
    dbp.set_defaults(func=cmd_db)
    return p


def main(argv: list[str] | None = None, *, serve: Serve = serve_router) -> int:
    """Run one command. `serve` is how `serve` runs the process: the composition root
    (local_ai_router.main) passes one that adds the bot."""
    args = parser().parse_args(argv)
    try:
        return cmd_serve(args, serve) if args.func is None else int(args.func(args))
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        return 2
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the router at {_router_url()}:[/red] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
