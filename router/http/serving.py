"""Running the router's app as a server process: event loop, signals, graceful shutdown.

`run(app, settings)` serves until SIGTERM or SIGINT; SIGHUP reloads the home-lab file. What the
app holds (plugins such as the bot) is the caller's business: see local_ai_router.main.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from router.http.api import SERVICE
from router.http.app import create_runner
from router.settings import ConfigError, Settings

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 50_000  # container allocations between young collections (Python: 700)


def run(app: web.Application, settings: Settings) -> None:
    """Serve `app` on the configured host and port until told to stop (see `serve`)."""
    app.on_startup.append(_freeze_startup_objects)
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(serve(app, settings.host, settings.port, settings.shutdown_grace))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to serve on: uvloop when installed (`auto`), else asyncio's own.

    uvloop takes a tenth off the router's CPU per request (docs/performance.md); `asyncio`
    is there to rule it out when something misbehaves.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("EVENT_LOOP=uvloop, but uvloop is not installed "
                              "(pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


async def serve(app: web.Application, host: str, port: int, grace: float) -> None:
    """Serve `app` until SIGTERM or SIGINT, then shut down gracefully and return.

    Shutdown stops accepting, lets requests in flight finish (up to `grace` seconds) and runs
    the app's cleanup contexts. A second (third, ...) signal during shutdown is logged and
    ignored: supervisors repeat SIGTERM (and people press Ctrl-C twice), and aiohttp's own
    `run_app` would turn that into an abandoned cleanup and exit status 1.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stopping.is_set():
            log.warning("%s received again; still shutting down gracefully (at most %.0fs for "
                        "requests in flight)", sig.name, grace)
            return
        log.info("%s received; shutting down gracefully", sig.name)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = asyncio.ensure_future(_reload(app))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    runner = create_runner(app, handle_signals=False, shutdown_timeout=grace)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await stopping.wait()
    finally:
        await runner.cleanup()


async def _reload(app: web.Application) -> None:
    """SIGHUP: re-read the home-lab file; a bad one is logged and changes nothing."""
    try:
        result = await app[SERVICE].reload()
    except ConfigError as exc:
        log.error("SIGHUP: configuration not reloaded, nothing changed: %s", exc)
    else:
        log.info("SIGHUP: %s", result.summary())


async def _freeze_startup_objects(_app: object) -> None:
    """Move everything alive after start-up out of the garbage collector's sight, and collect
    the young generation less often.

    The collector otherwise re-scans these long-lived objects (modules, settings, encodings) on
    every collection; freezing them cut CPU per request by 14-17% at 50 concurrent requests
    (bench/results). A request allocates a few hundred containers that die with it, so the
    default threshold ran a collection every few requests; a larger one took another 4% off,
    for at most a few MB of cyclic garbage waiting longer. Only a serving process does this,
    never a library user of create_app.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
