"""Executing bot commands against the in-process router (shared by mentions, DMs and `/ai`).

`BotActions.run(invocation, ctx)` returns a `Reply`: the Markdown text and whether it is a change
(`public`, posted `in_channel` by the slash command) or a query (`ephemeral`). Admin-only commands
from users outside `MATTERMOST_ADMINS` get a refusal, never an action. Nothing here talks to
Mattermost; database work runs in worker threads; agent calls may take minutes (`load`).
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Engine

from bot import charts, reports
from bot.commands import Invocation, help_text
from router.backends.agent_control import AgentClient, AgentError
from router.core.service import RouterService
from router.errors import RouterError
from router.settings import ConfigError
from router.store import queries
from router.wire import chat as req

__all__ = ["CHANGE_CHANNEL", "REASONS", "BotActions", "ChannelModels", "Context", "Reply"]

log = logging.getLogger(__name__)

CHANGE_CHANNEL: ContextVar[str | None] = ContextVar("bot_change_channel", default=None)
"""The channel of the command whose gaming change is being applied (None for other changes).
Gaming listeners run inside `GamingState.set`, in the command's own task, so they can read it:
the plugin skips its ops-channel notice when the command's public reply is already there."""

REASONS = {
    "explicit_model": "the request names a model or alias of this backend",
    "gaming_mode": "gaming mode is on, so the 3090 only takes force-big requests",
    "force_big": "the request asks for the big model (force-big)",
    "small_request": "the prompt is short (below SMALL_TOKEN_THRESHOLD)",
    "medium_request": "the prompt is medium-sized (below MEDIUM_TOKEN_THRESHOLD)",
    "long_context": "the prompt is long (at least MEDIUM_TOKEN_THRESHOLD)",
    "complex_task": "the prompt looks like a complex task",
    "fallback": "the preferred backends cannot take it",
}


@dataclass(frozen=True, slots=True)
class Context:
    """Who asked, where, and through what (`bot` or `slash`)."""

    username: str
    channel_id: str
    source: str = "bot"


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    public: bool = False
    chart: bytes | None = None
    """A PNG to attach (the `stats` chart); the slash command's response URL cannot carry it."""


class ChannelModels:
    """The chat model per channel, kept in the `settings` table as `channel_model:<id>`.

    Methods are coroutines that run SQLite in a worker thread; safe to call concurrently.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def get(self, channel_id: str) -> str:
        value = await asyncio.to_thread(queries.get_setting, self._engine,
                                        f"channel_model:{channel_id}")
        return value or "auto"

    async def set(self, channel_id: str, model: str, by: str) -> None:
        await asyncio.to_thread(queries.put_setting, self._engine, f"channel_model:{channel_id}",
                                model, by)


async def chart_png(engine: Engine, window: str) -> bytes | None:
    """The requests/latency chart for `window`, drawn in a worker thread; None (logged) when it
    cannot be drawn, so the text summary still goes out."""
    try:
        return await asyncio.to_thread(charts.chart_for, engine, window)
    except Exception:  # a chart is an extra: never let it cost the report
        log.exception("could not draw the %s chart", window)
        return None


class BotActions:
    """Runs commands for the bot and the slash endpoint. Loop-only; one per plugin."""

    def __init__(self, service: RouterService, agents: AgentClient, admins: frozenset[str],
                 models: ChannelModels) -> None:
        self.service = service
        self.agents = agents
        self.admins = frozenset(a.lower() for a in admins)
        self.models = models

    def is_admin(self, username: str) -> bool:
        return username.lower().lstrip("@") in self.admins

    def refusal(self, ctx: Context, usage: str) -> Reply:
        who = ", ".join(f"@{a}" for a in sorted(self.admins)) or "nobody (MATTERMOST_ADMINS is empty)"
        return Reply(f"Sorry @{ctx.username}, only admins may change gaming mode or models "
                     f"(`{usage}`). Admins: {who}.")

    async def run(self, invocation: Invocation, ctx: Context) -> Reply:
        """Execute one parsed command. Never raises for a user mistake; answers it instead."""
        spec = invocation.spec
        if spec.admin_only and not self.is_admin(ctx.username):
            log.info("refused %s from non-admin %s", invocation.name, ctx.username)
            return self.refusal(ctx, spec.usage)
        args = invocation.args
        try:
            match invocation.name:
                case "gaming":
                    return await self.gaming(args[0] == "on", ctx, args[1] if len(args) > 1 else None)
                case "reload":
                    return await self.reload()
                case "gaming status":
                    return Reply(reports.gaming_status_text(self.service.status()))
                case "status":
                    return Reply(reports.status_text(self.service.status()))
                case "models":
                    return Reply(reports.models_text(self.service.status(),
                                                     dict(self.service.topology.aliases),
                                                     await self.models.get(ctx.channel_id)))
                case "use":
                    return await self.use(args[0], ctx)
                case "route":
                    return await self.route(args[0], ctx)
                case "stats":
                    return await self.stats(args[0])
                case "load":
                    return await self.load(args[0], args[1] if len(args) > 1 else None)
                case "stop":
                    return await self.stop(args[0])
                case _:
                    return Reply(help_text())
        except RouterError as exc:
            return Reply(f"Sorry, that did not work: {exc.message}")
        except AgentError as exc:
            return Reply(f"Sorry, that did not work: {exc.message}", public=True)

    async def gaming(self, enabled: bool, ctx: Context, backend: str | None = None) -> Reply:
        service = self.service
        gaming = service.gaming.states
        if backend is not None:  # a label works as well as a name
            names = {service.topology.label(n).lower(): n for n in gaming}
            backend = backend if backend in gaming else names.get(backend.lower())
            if backend is None:
                listed = ", ".join(service.topology.label(n) for n in gaming) or "none is configured"
                return Reply(f"There is no such gaming backend; gaming backends: {listed}.")
        token = CHANGE_CHANNEL.set(ctx.channel_id)
        try:
            change = await service.gaming.set(enabled, ctx.username, ctx.source, backend)
        finally:
            CHANGE_CHANNEL.reset(token)
        labels = [service.topology.label(n) for n in change.backends]
        lines = [reports.gaming_change_text(enabled, labels)]
        if not change.applied:
            lines.append("The gaming PC could not be reached; the change is kept and applied as "
                         "soon as it answers.")
        if enabled:  # confirm the GPU is free when the host can tell (NVML)
            lines += [text for name, host in change.hosts.items()
                      if (text := reports.freed_text(service.topology.label(name), host))]
        return Reply("\n".join(lines), public=True)

    async def reload(self) -> Reply:
        try:
            result = await self.service.reload()
        except ConfigError as exc:
            return Reply(f"The configuration was not reloaded; nothing changed: {exc}")
        return Reply(result.summary(), public=True)

    async def use(self, model: str, ctx: Context) -> Reply:
        if model.lower() == "auto":
            await self.models.set(ctx.channel_id, "auto", ctx.username)
            return Reply("Chat in this channel now uses automatic routing (`auto`).", public=True)
        target = self._target(model)  # raises ModelNotFound
        await self.models.set(ctx.channel_id, model, ctx.username)
        where = f" (backend {target.backend})" if target.backend else ""
        return Reply(f"Chat in this channel now uses model `{model}`{where}.", public=True)

    async def route(self, prompt: str, ctx: Context) -> Reply:
        model = await self.models.get(ctx.channel_id)
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        planned = await self.service.plan("/v1/chat/completions", body)
        decision = planned.decision
        lines = []
        if decision.backend is None:
            lines.append(f"No backend could take this prompt: {decision.why_none()}.")
        else:
            backend_model = self.service.model_for(planned).get(decision.backend, "?")
            why = REASONS.get(decision.reason, decision.reason)
            lines.append(f"This prompt would go to **{decision.backend}** (`{backend_model}`), "
                         f"reason `{decision.reason}`: {why}.")
        lines.append(f"Estimated tokens: {planned.estimated_tokens}; model asked: `{model}`; "
                     f"gaming mode: {'on' if planned.gaming_mode else 'off'}; force-big: "
                     f"{'yes' if planned.force_big else 'no'}.")
        if len(decision.candidates) > 1:
            lines.append("Fallback order: " + " → ".join(decision.candidates) + ".")
        for name, why_skipped in decision.skipped.items():
            lines.append(f"Skipped {name}: {why_skipped}.")
        return Reply("\n".join(lines))

    async def stats(self, window: str) -> Reply:
        engine = self.service.engine
        await self.service.decisions.flush(timeout=2.0)
        rows = await asyncio.to_thread(reports.compute_stats, engine, reports.since(window))
        return Reply(reports.stats_table(rows, window), chart=await chart_png(engine, window))

    def _target(self, model: str) -> req.Target:
        topology = self.service.topology
        return req.resolve_target(model, topology.aliases, self.service.registry.served_models(),
                                  self.service.registry.states, topology.globs)

    def _agent_backend(self, name: str) -> tuple[str, str]:
        """The backend `name` (or a label or alias of it) and its agent's base URL."""
        topology = self.service.topology
        backend = name if name in topology.backends else next(
            (n for n, s in topology.backends.items() if s.label.lower() == name.lower()), None)
        if backend is None and topology.aliases.get(name):
            backend = topology.aliases[name].partition(":")[0]
        agents = [n for n, s in topology.backends.items() if s.kind == "agent"]
        if backend is None or backend not in topology.backends:
            raise AgentError(f"Unknown backend '{name}'; the GPU hosts are "
                             f"{', '.join(agents) or 'not configured'}.")
        spec = topology.backends[backend]
        if spec.kind != "agent":
            raise AgentError(f"{spec.label} has no inference agent; only the GPU hosts "
                             f"({', '.join(agents)}) can load or stop models.")
        return backend, spec.url.removesuffix("/v1")

    async def load(self, model: str, on: str | None) -> Reply:
        if on is None:
            target = self._target(model)
            if target.backend is None:
                raise AgentError("Say which model to load, e.g. `load qwen2.5-14b on 3090`.")
            on = target.backend
        backend, url = self._agent_backend(on)
        state = self.service.registry.get(backend)
        model_id = model
        alias = self.service.topology.aliases.get(model)
        if alias is not None and state is not None:
            model_id = state.client.resolve_model(alias.partition(":")[2] or None, state.served)
        await self.agents.load(url, model_id)
        await self.service.registry.check_all()
        return Reply(f"Model `{model_id}` is loaded and ready on {state.label if state else backend}.",
                     public=True)

    async def stop(self, name: str) -> Reply:
        backend, url = self._agent_backend(name)
        await self.agents.stop_all(url)
        return Reply(f"Stopped every model on {self.service.topology.label(backend)}; the GPU is "
                     "free. The next request starts the model again.", public=True)
