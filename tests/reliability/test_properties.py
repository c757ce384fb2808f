"""Property-based tests (hypothesis, derandomized): the request parser, the token estimator, and
the HTTP layer of a real router fed random bodies."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.core import tokens
from router.errors import BadRequest, ModelNotFound
from router.settings import BACKENDS, DEFAULT_ALIASES
from router.wire import chat as req
from tests.conftest import backend_env

PROPS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
ENDPOINTS = sorted(req.ENDPOINTS)

# JSON values as orjson can produce them (64-bit integers, finite floats).
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)

TAGGY = st.sampled_from(["#force_big", "#FORCE_BIG", "#force_bigger", "x#force_big", " #force_big ",
                         "\t#force_big\t", "#force_big!", "hello", "", " "])
tag_text = st.lists(TAGGY | st.text(max_size=8), max_size=6).map("".join)
content = (tag_text | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": tag_text})
                               | st.fixed_dictionaries({"type": st.just("image_url")}) | json_values,
                               max_size=4) | json_values)
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | json_values},
    optional={"content": content, "tool_calls": json_values | st.lists(
        st.fixed_dictionaries({"function": st.fixed_dictionaries({"name": st.text(max_size=8)})}),
        max_size=2)}) | json_values, max_size=5)
models = st.sampled_from(["auto", "", "small", "big", "3090", "claude", "glm", "opencode",
                          "qwen2.5-7b-instruct-awq", "glm-4.6", "nope"]) | st.text(max_size=12)
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
bodies = st.fixed_dictionaries({}, optional={
    "model": models | json_values,
    "messages": messages,
    "prompt": st.text(max_size=40) | json_values,
    "input": st.text(max_size=40) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.just({"include_usage": True}) | json_values,
    "max_tokens": st.integers(-5, 100_000) | json_values,
    "n": st.integers(-1, 2) | json_values,
    "tools": st.just([TOOL]) | json_values,
    "response_format": st.just({"type": "json_schema", "json_schema": {"name": "x"}}) | json_values,
    "temperature": json_values,
})

# Bodies that pass validation, with random models, sizes, flags and extra fields: these reach the
# routing, the backends and the decision log.
valid_chat = st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant"]),
         "content": tag_text | st.none() | st.lists(st.fixed_dictionaries(
             {"type": st.just("text"), "text": tag_text}), max_size=2)}), min_size=1, max_size=4)},
    optional={"model": models, "stream": st.booleans(), "max_tokens": st.integers(0, 40_000),
              "stream_options": st.just({"include_usage": True}), "tools": st.just([TOOL]),
              "user": st.text(max_size=10), "temperature": st.floats(0, 2)})


# -- the request parser ------------------------------------------------------------------------

@PROPS
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
       | bodies.map(lambda b: json.dumps(b).encode()), endpoint=st.sampled_from(ENDPOINTS))
def test_parse_body_returns_a_dict_or_raises_bad_request(raw: bytes, endpoint: str) -> None:
    try:
        body = req.parse_body(raw, endpoint)
    except BadRequest as exc:
        assert exc.status == 400 and exc.message.endswith(".")
    else:
        assert isinstance(body, dict) and req.ENDPOINTS[endpoint] in body


@PROPS
@given(body=bodies)
def test_strip_force_big_is_idempotent_and_leaves_no_tag(body: dict[str, Any]) -> None:
    once = copy.deepcopy(body)
    req.strip_force_big(once)
    twice = copy.deepcopy(once)
    assert req.strip_force_big(twice) is False
    assert twice == once
    messages = once.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            parts = content if isinstance(content, list) else []
            texts = [content] + [p.get("text") for p in parts if isinstance(p, dict)]
            assert not any(isinstance(t, str) and req.FORCE_BIG_TAG.search(t) for t in texts)


def test_force_big_tag_is_a_whole_word():
    body = {"messages": [{"role": "user", "content": "use #force_bigger models"}]}
    assert req.strip_force_big(body) is False
    assert body["messages"][0]["content"] == "use #force_bigger models"


@PROPS
@given(model=models | st.none(),
       served=st.dictionaries(st.text(min_size=1, max_size=12), st.sampled_from(BACKENDS), max_size=3))
def test_resolve_target_maps_every_model_or_raises_404(model, served) -> None:
    try:
        target = req.resolve_target(model, DEFAULT_ALIASES, served)
    except ModelNotFound as exc:
        assert exc.status == 404 and model not in DEFAULT_ALIASES and model not in served
        assert model not in (None, "", "auto")
        return
    if model in (None, "", "auto"):
        assert target.backend is None
    elif model in DEFAULT_ALIASES:
        assert target.backend == DEFAULT_ALIASES[model].partition(":")[0]
    else:
        assert (target.backend, target.hint) == (served[model], model)


# -- the token estimator -----------------------------------------------------------------------

@PROPS
@given(body=bodies | st.dictionaries(st.text(max_size=10), json_values, max_size=5))
async def test_estimate_never_raises_and_is_non_negative(body: dict[str, Any]) -> None:
    assert await tokens.estimate(body) >= 0


@PROPS
@given(body=bodies, extra=st.text(max_size=200), image=st.booleans())
async def test_estimate_grows_with_every_appended_message_part_and_tool(body, extra, image) -> None:
    body = {**body, "messages": [m for m in body.get("messages") or () if isinstance(m, dict)]}
    before = await tokens.estimate(body)
    more = {**body, "messages": [*body["messages"], {"role": "user", "content": extra}]}
    assert await tokens.estimate(more) >= before + tokens.PER_MESSAGE_TOKENS
    part = {"type": "image_url"} if image else {"type": "text", "text": extra}
    parts = {**more, "messages": [*more["messages"][:-1],
                                  {"role": "user", "content": [{"type": "text", "text": extra}, part]}]}
    assert await tokens.estimate(parts) >= await tokens.estimate(more)
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    assert (await tokens.estimate({**body, "tools": [*tools, TOOL]})
            > await tokens.estimate({**body, "tools": tools}))


def test_appending_raw_text_is_not_monotone_in_bpe():
    """Why the property above appends parts, not characters: BPE can merge across the cut."""
    assert tokens.count_text("impor") == 2 and tokens.count_text("import") == 1


# -- the HTTP layer ------------------------------------------------------------------------------

ALLOWED = {200, 400, 404, 413, 503}


async def test_random_bodies_never_crash_the_router(make_router, upstreams):
    router = await make_router(backend_env(upstreams), max_body_bytes=4096)
    seen: set[int] = set()

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(raw=valid_chat.map(lambda b: json.dumps(b).encode())
           | bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=300)
           | json_values.map(lambda v: json.dumps(v).encode())
           | st.just(b'{"messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'),
           path=st.sampled_from(["/v1/chat/completions"] * 3 + ENDPOINTS))
    def check(raw: bytes, path: str) -> None:
        response = http.post(router.url + path, content=raw,
                             headers={"Content-Type": "application/json"})
        seen.add(response.status_code)
        assert response.status_code in ALLOWED, response.text
        assert response.headers["X-Request-ID"]
        if response.status_code != 200:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert isinstance(error["message"], str) and error["message"]

    # hypothesis drives a blocking client from a worker thread; the router runs on this loop
    with httpx.Client(timeout=10) as http:
        await asyncio.to_thread(check)
    assert {200, 400, 404} <= seen
    async with httpx.AsyncClient() as client:
        assert (await client.get(router.url + "/health")).status_code == 200
