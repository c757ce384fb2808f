"""The code's layout rules that a reader relies on: `router/` is a library that never imports the
bot, and the composition root (local_ai_router) is where the two meet."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.plugin import BotPlugin
from local_ai_router.main import plugins
from router.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_router_never_imports_the_bot_or_the_composition_root() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in _imports(path)
                                                     if name.split(".")[0] in ("bot", "local_ai_router"))
                 for path in (ROOT / "router").rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_composition_root_adds_the_bot_only_when_mattermost_is_configured() -> None:
    assert plugins(Settings.from_env({})) == []
    configured = plugins(Settings.from_env({"MATTERMOST_URL": "http://127.0.0.1:1",
                                            "MATTERMOST_TOKEN": "t"}))
    assert [type(p) for p in configured] == [BotPlugin]


def test_serving_the_router_alone_with_mattermost_configured_says_how_to_get_the_bot(
        monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import router.http.serving
    from router.cli import serve_router

    served: list[object] = []
    monkeypatch.setattr(router.http.serving, "run", lambda app, settings: served.append(app))
    serve_router(Settings.from_env({"MATTERMOST_URL": "http://127.0.0.1:1",
                                    "MATTERMOST_TOKEN": "t"}))
    assert len(served) == 1
    assert "serves the router without the bot" in caplog.text
    assert "local-ai-router serve" in caplog.text
