"""The bot over a home-lab file: labels, gaming mode per backend, `reload`, and a chat answer
from a cold backend that says so while the model starts."""

from __future__ import annotations

from pathlib import Path

from tests.bot.bot_helpers import start_bot
from tests.bot.mattermost_helpers import World
from tests.conftest import AgentFactory, RouterFactory
from tests.fakes.upstream import FakeUpstream


def write_lab(path: Path, pc_url: str, zai_url: str, *, label: str = "Gaming PC") -> None:
    path.write_text(f"""
fallback = ["pc", "zai"]

[backends.pc]
kind = "agent"
url = "{pc_url}"
label = "{label}"
gaming = true

[backends.zai]
kind = "openai"
url = "{zai_url}"
label = "Z.ai"

[[rules]]
when = {{ gaming_mode = true, force_big = false }}
to = ["zai"]
reason = "gaming_mode"

[[rules]]
to = ["pc"]
reason = "main"
""")


async def test_gaming_per_backend_labels_and_reload(world: World, make_router: RouterFactory,
                                                   tmp_path: Path) -> None:
    pc = await FakeUpstream("pc-model", 32768, gaming_mode=False).start()
    zai = await FakeUpstream("glm-4.7", 200_000).start()
    try:
        lab = tmp_path / "lab.toml"
        write_lab(lab, pc.url, zai.url)
        ignored = {"3070": zai, "3090": pc, "opencode": zai}  # the file declares the backends
        w = await start_bot(world, ignored, make_router, ROUTER_CONFIG=str(lab))
        alice = w.world.alice

        post = w.say(alice, "@aibot gaming mode on gaming pc")  # the label works as a name
        assert (await w.reply(post))["message"] == (
            "Gaming mode enabled. Gaming PC will only respond to force-big requests.")
        assert pc.gaming_posts == [True]
        post = w.say(alice, "@aibot gaming status")
        assert (await w.reply(post))["message"] == (
            "Gaming mode: ON\nGaming PC: Gated (force-big only)\nZ.ai: Available")
        post = w.say(alice, "@aibot gaming mode on zai")
        assert "There is no such gaming backend; gaming backends: Gaming PC" in (
            await w.reply(post))["message"]

        write_lab(lab, pc.url, zai.url, label="Big PC")
        post = w.say(w.bob, "@aibot reload")
        assert (await w.reply(post))["message"].startswith("Sorry @bob, only admins")
        post = w.say(alice, "@aibot reload")
        assert (await w.reply(post))["message"] == (
            f"Configuration reloaded from {lab}: backends pc, zai; new or changed: pc.")
        post = w.say(alice, "@aibot gaming status")
        assert "Big PC: Gated (force-big only)" in (await w.reply(post))["message"]

        lab.write_text(lab.read_text().replace('kind = "openai"', 'kind = "openia"'))
        post = w.say(alice, "@aibot reload")
        reply = (await w.reply(post))["message"]
        assert reply.startswith("The configuration was not reloaded; nothing changed:")
        assert "[backends.zai] key 'kind'" in reply
    finally:
        await pc.stop()
        await zai.stop()


async def test_a_cold_backend_says_it_is_starting_then_answers(
        world: World, make_router: RouterFactory, start_agent: AgentFactory) -> None:
    agent = await start_agent("--startup-delay", "4", keepalive=1)
    spare = await FakeUpstream("spare", 32768).start()
    w = await start_bot(world, {"3070": spare, "3090": spare, "opencode": spare}, make_router,
                        "3070", GAMING_PC_URL=agent, STREAM_KEEPALIVE="1", FIRST_BYTE_TIMEOUT="10")
    post = w.say(w.world.alice, "@aibot hello there #force_big")
    await w.server.wait_for_edit(lambda e: "Starting cold on 3090…" in e.message, timeout=30)
    answer = await w.server.wait_for_post(  # the note became the answer, with its footer
        lambda p: p["root_id"] == post["id"] and "force_big" in p["message"]
        and "Starting cold" not in p["message"], timeout=60)
    assert "3090" in answer["message"]
    await spare.stop()
