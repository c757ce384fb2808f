"""`local-ai-router config check`: validate the home-lab file and show the effective topology.

Builds the same `Topology` the router would (with no network: an `OPENCODE_URL` whose kind is
auto-detected at start is shown as such) and renders it as rich tables. Secrets are shown only
as "set".
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from router.config import Topology, has_backends_table, load_topology, seed_topology
from router.settings import Settings, redact_url


def effective_topology(environ: Mapping[str, str]) -> Topology:
    """The topology `serve` would build from `environ`. Raises ConfigError."""
    settings = Settings.from_env(environ)
    path = environ.get("ROUTER_CONFIG")
    if path and has_backends_table(path):
        return load_topology(path, settings, environ)
    kind = settings.opencode_api if settings.opencode_api != "auto" else "opencode or openai"
    return seed_topology(settings, kind, settings.anthropic_api_key)


def check(environ: Mapping[str, str]) -> list[Table]:
    """Tables of the effective backends, aliases and rules. Raises ConfigError."""
    topology = effective_topology(environ)
    return [_backends(topology), _aliases(topology), _rules(topology)]


def _backends(topology: Topology) -> Table:
    table = Table(title=f"Backends ({topology.origin})")
    for column in ("backend", "kind", "url", "models / context", "options"):
        table.add_column(column, overflow="fold")
    for spec in topology.backends.values():
        name = spec.name if spec.label == spec.name else f"{spec.name} ({spec.label})"
        models = ", ".join(spec.models) or "reported"
        context = str(spec.context_window) if spec.context_window else "reported"
        options = [flag for flag, on in (("gaming", spec.gaming), ("explicit only", spec.explicit_only),
                                         ("api key set", bool(spec.api_key)),
                                         ("loading status", spec.loading_status)) if on]
        options += [f"{k} {v}" for k, v in (("rpm", spec.rpm), ("concurrency", spec.concurrency)) if v]
        if spec.apis != {"chat"}:
            options.append("apis " + ",".join(sorted(spec.apis)))
        options += [f"{k}={v}" for k, v in spec.defaults.items()]
        table.add_row(name, spec.kind, redact_url(spec.url), f"{models} / {context}",
                      "; ".join(options))
    return table


def _aliases(topology: Topology) -> Table:
    table = Table(title="Aliases")
    table.add_column("alias")
    table.add_column("target")
    for alias, target in sorted(topology.aliases.items()):
        table.add_row(alias, target)
    for pattern, target in topology.globs:
        table.add_row(pattern, target)
    return table


def _rules(topology: Topology) -> Table:
    table = Table(title="Rules (first whose conditions hold and that has a usable candidate)")
    for column in ("#", "when", "to", "reason"):
        table.add_column(column)
    for index, rule in enumerate(topology.rules, 1):
        table.add_row(str(index), rule.when.describe(), ", ".join(rule.to), rule.reason)
    table.add_row("-", "no rule applies", ", ".join(topology.fallback), "fallback")
    return table
