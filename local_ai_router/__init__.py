"""The composition root of the router process: the one package that knows every part.

`router` is the library (HTTP surface, wire translation, backends, routing core, store) and never
imports the bot; `bot` is a plugin of the router's app. `local_ai_router.main` builds the process
from both: `local-ai-router serve` (or `python -m local_ai_router serve`).
"""
