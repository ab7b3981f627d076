"""``agentgym serve``: an OpenAI-compatible HTTP server in front of a :class:`TransformersPolicy`.

Endpoints: ``GET /v1/models`` (and ``/v1/models/{name}``), ``POST /v1/chat/completions``,
``POST /v1/completions`` (no streaming). Concurrent requests with the same sampling parameters are
batched into one ``generate`` call. Responses carry vLLM's extra fields: ``prompt_token_ids`` and
per-choice ``token_ids`` (always), and per-token ``logprobs`` when asked for (``logprobs: true``;
with ``return_tokens_as_token_ids: true`` each token is written ``token_id:N``). Logprobs are those
of the sampling distribution (see :mod:`agentgym.policies.hf`).

As in OpenAI's API and vLLM's, a matched stop string is cut from the text (the token ids keep every
sampled token); ``include_stop_str_in_output: true`` keeps it, so that the text is exactly the
sampled tokens (agentgym's ``openai`` policy asks for that). With ``tool_call_parser="hermes"``
(vLLM's ``--tool-call-parser hermes``), a chat reply's ``<tool_call>{...}</tool_call>`` blocks come
back as ``message.tool_calls`` with ``finish_reason: "tool_calls"`` when the request has tools;
otherwise they stay in the text. What the server cannot do it refuses with a 400 rather than ignore:
streaming, ``tool_choice`` that forces a call, ``response_format`` other than text, ``echo``, top
alternatives of logprobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid
from dataclasses import replace
from typing import Any, Callable

from pydantic import ValidationError

from agentgym.errors import PolicyError, validation_summary
from agentgym.parsing import hermes_tool_calls
from agentgym.policies._batching import Batcher
from agentgym.policies.base import Completion, SamplingParams
from agentgym.types import Message, ToolCall, ToolSpec


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PolicyServer:
    """Serves ``policy`` (a :class:`~agentgym.policies.hf.TransformersPolicy` or anything with
    ``render``, ``generate_tokens``, ``encode`` and ``decode``) under the model name ``served_name``.

    Use as an async context manager or call :meth:`start` and :meth:`aclose`; ``port=0`` picks a
    free port (read it from :attr:`url`). ``batch_sizes`` lists the size of every batched call.
    """

    def __init__(self, policy: Any, *, served_name: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                 max_batch_size: int | None = None, max_wait: float = 0.01, tool_call_parser: str | None = None) -> None:
        for attr in ("render", "generate_tokens", "encode", "decode"):
            if not hasattr(policy, attr):
                raise PolicyError(f"agentgym serve needs a local model policy (transformers); {policy!r} has no {attr}")
        if tool_call_parser not in (None, "hermes"):
            raise PolicyError(f"tool_call_parser must be 'hermes' or None, got {tool_call_parser!r}")
        self.policy = policy
        self.tool_call_parser = tool_call_parser
        self.served_name = served_name or getattr(policy, "name", "model")
        self.host, self.port = host, port
        self._batcher: Batcher[tuple[list[int], int | None], Completion] = Batcher(
            self._generate, max_batch=max_batch_size or getattr(policy, "max_batch_size", 8), max_wait=max_wait)
        self._runner: Any = None
        self._closing = False
        config = getattr(getattr(policy, "model", None), "config", None)
        self._vocab_size: int | None = getattr(config, "vocab_size", None)
        self._max_context: int | None = getattr(config, "max_position_embeddings", None)

    @property
    def batch_sizes(self) -> list[int]:
        """The size of every batched ``generate`` call so far."""
        return self._batcher.batch_sizes

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    async def _generate(self, key: Any, items: list[tuple[list[int], int | None]]) -> list[Completion]:
        temperature, top_p, max_new_tokens, stop, _ = key
        params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=list(stop))
        return await self.policy.generate_tokens([p for p, _ in items], params, [seed for _, seed in items])

    # ----- lifecycle ---------------------------------------------------------------------------
    def app(self) -> Any:
        """The aiohttp application."""
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[web.middleware(_json_http_errors)])
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{name}", self._model)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/health", self._health)
        return app

    async def start(self) -> None:
        """Start listening on ``host:port``."""
        from aiohttp import web

        # a client that hangs up cancels its handler, so the Batcher drops its request
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def aclose(self) -> None:
        """Stop the server; requests still waiting for the model get a 503."""
        self._closing = True
        await self._batcher.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "PolicyServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- handlers ----------------------------------------------------------------------------
    async def _health(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "ok"})

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [self._model_card()]})

    async def _model(self, request: Any) -> Any:
        from aiohttp import web

        if request.match_info["name"] != self.served_name:
            return _error(f"The model `{request.match_info['name']}` does not exist; this server serves "
                          f"`{self.served_name}`.", 404)
        return web.json_response(self._model_card())

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.served_name, "object": "model", "created": 0, "owned_by": "agentgym"}

    async def _chat(self, request: Any) -> Any:
        return await self._handle(request, self._chat_body)

    async def _completions(self, request: Any) -> Any:
        return await self._handle(request, self._completions_body)

    async def _handle(self, request: Any, build: Any) -> Any:
        from aiohttp import web

        try:
            if self._closing:
                return _error("the server is shutting down", 503)
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _BadRequest("the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _BadRequest("the request body must be a JSON object")
            if body.get("stream"):
                raise _BadRequest("streaming is not supported by agentgym serve")
            if "model" not in body:
                raise _BadRequest(f"the request needs a \"model\" field; this server serves `{self.served_name}`")
            if body.get("model") != self.served_name:
                raise _BadRequest(f"The model `{body.get('model')}` does not exist; this server serves "
                                  f"`{self.served_name}`.", status=404)
            if self._closing:  # closed while the body was arriving: the batcher takes no more work
                return _error("the server is shutting down", 503)
            return web.json_response(await build(body))
        except asyncio.CancelledError:
            # Python 3.11+ tells our batch's cancellation from the handler's own; 3.10 answers 503 to both
            cancelling = getattr(asyncio.current_task(), "cancelling", lambda: 0)
            if self._closing and not cancelling():  # aclose cancelled our batch, not this handler
                return _error("the server is shutting down", 503)
            raise
        except _BadRequest as exc:
            return _error(str(exc), exc.status)
        except PolicyError as exc:
            return _error(str(exc), 500)
        except Exception as exc:  # a bug: still an OpenAI-style error, and in the server's log
            logging.getLogger(__name__).exception("request failed")
            return _error(f"{type(exc).__name__}: {exc}", 500)

    def _default_max_tokens(self, prompts: list[list[int]], default: int) -> int:
        """``default``, or what the context leaves after the longest prompt when that is less (at least 1)."""
        if self._max_context is None:
            return default
        return max(1, min(default, self._max_context - max(map(len, prompts))))

    async def _run(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        for p in prompts:
            if self._max_context is not None and len(p) + params.max_new_tokens > self._max_context:
                raise _BadRequest(f"This model's maximum context length is {self._max_context} tokens; the prompt "
                                  f"has {len(p)} and max_tokens asks for {params.max_new_tokens} more.")
        # requests with different seeds still share a batch: each prompt gets its own generator
        key = replace(params, seed=None).key()
        return list(await asyncio.gather(*(self._batcher.submit(key, (p, s))
                                           for p, s in zip(prompts, params.seeds_for(len(prompts))))))

    async def _chat_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("top_logprobs"):
            raise _BadRequest("top_logprobs is not supported: agentgym serve returns the logprob of each sampled "
                              "token only (logprobs: true)")
        _refuse_response_format(body.get("response_format"))
        messages = _parse_messages(body.get("messages"))
        tools = _parse_tools(body.get("tools"))
        tool_choice = _tool_choice(body.get("tool_choice"))
        max_tokens = body.get("max_completion_tokens")
        max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
        prompt = self.policy.render(messages, tools)
        params = _params(body, self._default_max_tokens([prompt], 256) if max_tokens is None else max_tokens)
        n = _int(body.get("n", 1), "n")
        outs = await self._run([prompt] * n, params)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        parse_calls = self.tool_call_parser is not None and bool(tools) and tool_choice != "none"
        choices = []
        for i, c in enumerate(outs):
            message: dict[str, Any] = {"role": "assistant", "content": _text(c, params, body)}
            finish = c.finish_reason
            found = hermes_tool_calls(message["content"]) if parse_calls else None
            if found is not None:
                calls, rest = found
                message = {"role": "assistant", "content": rest or None, "tool_calls": [
                    {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                     "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}
                    for call in calls]}
                finish = "tool_calls"
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish, "logprobs": None,
                                      "token_ids": c.token_ids}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [
                    {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")), "top_logprobs": []}
                    for tok, lp in zip(self._token_strings(c.token_ids, as_ids), c.logprobs)]}
            choices.append(choice)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.served_name, "choices": choices, "usage": _usage(prompt, outs),
                "prompt_token_ids": prompt}

    async def _completions_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("echo"):
            raise _BadRequest("echo is not supported by agentgym serve; the prompt's token ids are in "
                              "prompt_token_ids")
        logprobs = body.get("logprobs")
        if logprobs not in (None, False, True, 0):  # 0 (or true) asks for the sampled tokens' logprobs
            raise _BadRequest(f"logprobs: {logprobs!r} asks for top alternatives, which agentgym serve does not "
                              "give; logprobs: 0 gives the logprob of each sampled token")
        prompts = self._parse_prompts(body.get("prompt"))
        max_tokens = body.get("max_tokens")
        params = _params(body, self._default_max_tokens(prompts, 16) if max_tokens is None else max_tokens)
        n = _int(body.get("n", 1), "n")
        outs = await self._run([p for p in prompts for _ in range(n)], params)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        choices = []
        for i, c in enumerate(outs):
            choice: dict[str, Any] = {"index": i, "text": _text(c, params, body), "finish_reason": c.finish_reason,
                                      "logprobs": None, "token_ids": c.token_ids, "prompt_token_ids": c.prompt_ids}
            if logprobs is not None and logprobs is not False:
                choice["logprobs"] = {"tokens": self._token_strings(c.token_ids, as_ids), "token_logprobs": c.logprobs,
                                      "top_logprobs": None, "text_offset": None}
            choices.append(choice)
        usage = {"prompt_tokens": sum(map(len, prompts)),  # each prompt once, however many samples it has
                 "completion_tokens": sum(len(c.token_ids) for c in outs)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.served_name, "choices": choices, "usage": usage}

    def _parse_prompts(self, prompt: Any) -> list[list[int]]:
        if isinstance(prompt, str):
            prompt = [prompt]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompt = [prompt]
        if not isinstance(prompt, list) or not prompt:
            raise _BadRequest("'prompt' must be a string, a list of strings, or token ids")
        out = []
        for p in prompt:
            if isinstance(p, str):
                out.append(self.policy.encode(p))
            elif isinstance(p, list) and p and all(isinstance(t, int) for t in p):
                if self._vocab_size is not None and not all(0 <= t < self._vocab_size for t in p):
                    raise _BadRequest(f"'prompt' token ids must be in [0, {self._vocab_size})")
                out.append(p)
            else:
                raise _BadRequest("'prompt' must be a string, a list of strings, or token ids")
        if any(not p for p in out):
            raise _BadRequest("'prompt' must not be empty")
        return out

    def _token_strings(self, ids: list[int], as_ids: bool) -> list[str]:
        if as_ids:
            return [f"token_id:{t}" for t in ids]
        return [self.policy.decode([t], skip_special_tokens=False) for t in ids]


def _error(message: str, status: int) -> Any:
    from aiohttp import web

    kind = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowedError",
            503: "ServiceUnavailableError"}.get(status, "InternalServerError")
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _BadRequest(f"'{name}' must be a positive integer, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(f"'{name}' must be a number, got {value!r}")
    return float(value)


def _params(body: dict[str, Any], max_tokens: Any) -> SamplingParams:
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise _BadRequest(f"'stop' must be a non-empty string or a list of them, got {body.get('stop')!r}")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 63 - 2 ** 16):
        raise _BadRequest(f"'seed' must be an integer in [0, 2**63 - 2**16), got {seed!r}")  # room for seed + i
    try:
        return SamplingParams(temperature=1.0 if temperature is None else _number(temperature, "temperature"),
                              top_p=1.0 if top_p is None else _number(top_p, "top_p"),
                              max_new_tokens=_int(256 if max_tokens is None else max_tokens, "max_tokens"),
                              stop=list(stop), seed=seed)
    except (TypeError, ValueError) as exc:
        raise _BadRequest(str(exc)) from None


def _parse_messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise _BadRequest("'messages' must be a non-empty list")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise _BadRequest("each message must be an object with 'role' and 'content'")
        try:
            content = m.get("content") or ""
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            calls = None
            if m.get("tool_calls"):
                calls = []
                for c in m["tool_calls"]:
                    fn = c.get("function", {})
                    args = fn.get("arguments") or {}
                    calls.append(ToolCall(name=fn.get("name", ""), id=c.get("id"),
                                          arguments=json.loads(args) if isinstance(args, str) else args))
            role = m.get("role")
            if role == "developer":  # OpenAI's newer name for system instructions
                role = "system"
            if role not in _ROLES:
                raise _BadRequest(f"a message's role must be one of {', '.join(_ROLES)} (or developer), got {role!r}")
            out.append(Message(role=role, content=content, tool_calls=calls,
                               tool_call_id=m.get("tool_call_id"), name=m.get("name")))
        except ValidationError as exc:
            raise _BadRequest(f"invalid message: {validation_summary(exc)}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise _BadRequest(f"invalid message: {exc}") from None
    return out


_ROLES = ("system", "user", "assistant", "tool")


def _tool_choice(raw: Any) -> str:
    """``auto`` or ``none``; a choice that forces a call is refused (sampling cannot be constrained here)."""
    if raw is None or raw in ("auto", "none"):
        return raw or "auto"
    raise _BadRequest(f"tool_choice {raw!r} is not supported: agentgym serve cannot force a tool call; use \"auto\" "
                      "or \"none\"")


def _refuse_response_format(raw: Any) -> None:
    if raw is not None and not (isinstance(raw, dict) and raw.get("type") == "text"):
        raise _BadRequest("response_format is not supported by agentgym serve (only {\"type\": \"text\"}): it "
                          "cannot constrain sampling to JSON")


def _text(completion: Completion, params: SamplingParams, body: dict[str, Any]) -> str:
    """The completion's text, cut at the first stop string it holds unless the request keeps it
    (``include_stop_str_in_output``), as OpenAI and vLLM answer."""
    text = completion.text
    if completion.finish_reason != "stop" or not params.stop or body.get("include_stop_str_in_output"):
        return text
    cuts = [i for i in (text.find(s) for s in params.stop) if i >= 0]
    return text[:min(cuts)] if cuts else text


def _parse_tools(raw: Any) -> list[ToolSpec] | None:
    if not raw:
        return None
    if not isinstance(raw, list) or not all(isinstance(t, dict) and isinstance(t.get("function"), dict)
                                            and isinstance(t["function"].get("name"), str) for t in raw):
        raise _BadRequest("'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\": ..., "
                          "\"description\": ..., \"parameters\": {...}}}")
    try:
        return [ToolSpec(name=t["function"]["name"], description=t["function"].get("description", ""),
                         parameters=t["function"].get("parameters") or {"type": "object", "properties": {}})
                for t in raw]
    except (TypeError, ValueError) as exc:
        raise _BadRequest(f"invalid tools: {exc}") from None


async def _json_http_errors(request: Any, handler: Any) -> Any:
    """An unknown path or method answers with an OpenAI-style JSON error, as the endpoints do."""
    from aiohttp import web

    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(f"{request.method} {request.path}: {exc.reason}", exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the path takes
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def _usage(prompt: list[int], outs: list[Completion]) -> dict[str, int]:
    completion = sum(len(c.token_ids) for c in outs)
    return {"prompt_tokens": len(prompt), "completion_tokens": completion, "total_tokens": len(prompt) + completion}


async def serve_forever(server: PolicyServer, on_start: Callable[[PolicyServer], None] | None = None) -> None:
    """Run ``server`` until the task is cancelled (Ctrl-C) or the process gets SIGTERM (what docker and
    systemd send); either way requests still waiting get a 503. ``on_start`` is called once it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (Windows, or not the main thread)
        pass
    try:
        async with server:
            if on_start is not None:
                on_start(server)
            await stop.wait()
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError):
            pass
