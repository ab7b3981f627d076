"""A policy served by any OpenAI-compatible HTTP server (vLLM, SGLang, ``agentgym serve``), over aiohttp.

Each conversation is one ``POST {base_url}/chat/completions`` request. The request asks for
sampling logprobs and token ids the way vLLM offers them (``logprobs``,
``return_tokens_as_token_ids``, ``return_token_ids``); servers that ignore those fields still work
and the completion then carries empty ``token_ids``/``logprobs``/``prompt_ids``. A strict server
that rejects them (api.openai.com: "Unrecognized request argument") is asked again without them,
and they are left out from then on. The logprobs are
whatever the server reports (vLLM: the raw model distribution unless it runs with processed
logprobs; ``agentgym serve``: the sampling distribution, see :mod:`agentgym.policies.hf`).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import math
import random
from typing import Any

from agentgym.errors import PolicyError
from agentgym.policies.base import Completion, SamplingParams
from agentgym.types import Message, ToolSpec

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is capped, not obeyed
_VLLM_FIELDS = ("return_tokens_as_token_ids", "return_token_ids", "include_stop_str_in_output", "skip_special_tokens")


class _HTTPError(PolicyError):
    """A request the server answered with an error status that retrying will not fix."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OpenAIPolicy:
    """Chat completions from an OpenAI-compatible server at ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``).

    ``model`` names the served model; when omitted, the server's only model is used. Tool specs
    go with each request under ``tool_choice`` (default ``"none"``): the environment parses actions
    from the text, so the server should render the tools into the prompt but return the raw text
    (whose token ids are what gets trained). ``"auto"`` makes the server parse calls itself (vLLM
    then needs ``--enable-auto-tool-choice --tool-call-parser ...``); parsed calls are turned back
    into ``<tool_call>`` text, which then no longer matches the token ids exactly. At most
    ``concurrency`` requests are in flight. Requests that fail with 408/409/429/5xx or a connection
    error (or a response cut short) are retried ``max_retries`` times with exponential backoff and
    jitter, waiting at least a 429/503's ``Retry-After``; after that, and at
    once for other errors, ``generate`` raises :class:`~agentgym.errors.PolicyError`. The first
    call checks ``GET /models``: a wrong URL or model name fails fast with the served names listed.
    """

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 concurrency: int = 32, max_retries: int = 4, backoff: float = 0.5, timeout: float = 300.0,
                 tool_choice: str = "none") -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PolicyError(f"base_url must start with http:// or https://, got {base_url!r}")
        if concurrency <= 0:
            raise ValueError(f"concurrency must be positive, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model or self.base_url
        self.concurrency = concurrency
        self.max_batch_size = concurrency
        self.max_inflight_batches = concurrency
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self.tool_choice = tool_choice
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: Any = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._checked = False
        self._closed = False
        self._vllm_fields = True  # until a strict server rejects them

    # ----- HTTP --------------------------------------------------------------------------------
    def _ensure_session(self) -> Any:
        import aiohttp

        if self._closed:
            raise PolicyError(f"OpenAIPolicy for {self.base_url} is closed")
        loop = asyncio.get_running_loop()
        if self._session is not None and self._session_loop is not loop:
            # a session belongs to its event loop: a later asyncio.run (another run_sync) needs a new one
            if self._session_loop is not None and self._session_loop.is_closed():
                connector = self._session.connector
                self._session.detach()
                # its loop is gone, so close() cannot be awaited; the sync part marks it closed (aiohttp 3.x)
                getattr(connector, "_close", lambda: None)()
            self._session = None
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._session_loop = loop
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._session

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request with retries; return the decoded JSON body."""
        import aiohttp

        session = self._ensure_session()
        assert self._semaphore is not None
        url = f"{self.base_url}{path}"
        last, answered, wait_at_least = "", False, 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                backoff = self.backoff * 2 ** (attempt - 1) * (0.5 + random.random())
                await asyncio.sleep(max(backoff, wait_at_least))
            wait_at_least = 0.0
            try:
                async with self._semaphore, session.request(method, url, json=body) as resp:
                    text = await resp.text()
                    if resp.status == 200:
                        return json.loads(text)
                    message = _error_message(text)
                    if resp.status not in _RETRY_STATUS:
                        raise _HTTPError(f"{method} {url} failed with HTTP {resp.status}: {message}", resp.status)
                    last, answered = f"HTTP {resp.status}: {message}", True
                    wait_at_least = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                last, answered = f"{type(exc).__name__}: {exc}", isinstance(exc, aiohttp.ClientPayloadError)
            except (aiohttp.ClientError, UnicodeDecodeError) as exc:  # a malformed response: retrying won't help
                raise PolicyError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
            except json.JSONDecodeError as exc:
                raise PolicyError(f"{url} did not return JSON ({exc}); is it an OpenAI-compatible server?") from exc
        if answered:
            raise PolicyError(f"{method} {url} still failing after {self.max_retries + 1} attempts ({last})")
        raise PolicyError(f"cannot reach an OpenAI-compatible server at {url} after {self.max_retries + 1} "
                          f"attempts ({last}); check the URL and that the server is running")

    async def models(self) -> list[str]:
        """The model names the server serves (``GET /models``)."""
        data = await self._request("GET", "/models")
        try:
            return [m["id"] for m in data["data"]]
        except (KeyError, TypeError) as exc:
            raise PolicyError(f"{self.base_url}/models did not return an OpenAI model list") from exc

    async def check(self) -> None:
        """Fail fast with a :class:`PolicyError` unless the server answers and serves the model (once)."""
        if self._checked:
            return
        try:
            served = await self.models()
        except _HTTPError as exc:
            if exc.status == 404 and not self.base_url.endswith("/v1"):
                raise PolicyError(f"{exc}; OpenAI-compatible servers usually serve under /v1: "
                                  f"did you mean {self.base_url}/v1?") from None
            raise
        if self.model is None:
            if len(served) != 1:
                raise PolicyError(f"{self.base_url} serves {served}; name one: openai:{self.base_url}#MODEL")
            self.model = self.name = served[0]
        elif self.model not in served:
            raise PolicyError(f"model {self.model!r} is not served at {self.base_url}; it serves {served}")
        self._checked = True

    # ----- Policy ------------------------------------------------------------------------------
    async def generate(self, conversations: list[list[Message]], tools: list[ToolSpec] | None,
                       params: SamplingParams, seeds: list[int | None] | None = None) -> list[Completion]:
        """One chat completion request per conversation, sent concurrently (``seeds[i]`` as its ``seed``)."""
        await self.check()
        tool_list = [t.to_openai() for t in tools] if tools else None
        if seeds is None:
            seeds = params.seeds_for(len(conversations))
        for_all = [self._complete(c, tool_list, params, seed) for c, seed in zip(conversations, seeds, strict=True)]
        return list(await asyncio.gather(*for_all))

    async def _complete(self, conversation: list[Message], tools: list[dict] | None, params: SamplingParams,
                        seed: int | None) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message_json(m) for m in conversation],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "logprobs": True,
        }
        if self._vllm_fields:
            body.update(dict.fromkeys(_VLLM_FIELDS, True))
        if tools:
            body["tools"], body["tool_choice"] = tools, self.tool_choice
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        try:
            data = await self._request("POST", "/chat/completions", body)
        except _HTTPError as exc:
            if exc.status != 400 or not any(f in str(exc) for f in _VLLM_FIELDS if f in body):
                raise
            self._vllm_fields = False  # a strict server: no token ids from it, but text and logprobs
            data = await self._request("POST", "/chat/completions", {k: v for k, v in body.items()
                                                                       if k not in _VLLM_FIELDS})
        return _parse_chat(data)

    async def aclose(self) -> None:
        """Close the HTTP session; later calls raise PolicyError."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "OpenAIPolicy":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIPolicy({self.base_url!r}, model={self.model!r})"


def _message_json(m: Message) -> dict[str, Any]:
    out = m.to_openai()
    for call in out.get("tool_calls", ()):
        call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    return out


def _retry_after(header: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for: a number of seconds or an HTTP date (RFC 9110)."""
    if not header:
        return 0.0
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, OverflowError):
            return 0.0  # unreadable: fall back to the backoff alone
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)  # HTTP dates are GMT
        seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER) if not math.isnan(seconds) else 0.0


def _error_message(text: str) -> str:
    try:
        err = json.loads(text).get("error", text)
        return err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        return text[:300]


def _parse_chat(data: dict[str, Any]) -> Completion:
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise PolicyError(f"malformed chat completion response: {str(data)[:300]}") from exc
    text = message.get("content") or ""
    for call in message.get("tool_calls") or ():  # a server-side tool parser took the call out of the text
        fn = call.get("function", {})
        args = fn.get("arguments", "{}")
        args = json.loads(args) if isinstance(args, str) and args.strip() else (args or {})
        text += f'<tool_call>{json.dumps({"name": fn.get("name"), "arguments": args})}</tool_call>'
    entries = (choice.get("logprobs") or {}).get("content") or []
    logprobs = [float(e["logprob"]) for e in entries]
    token_ids = choice.get("token_ids")
    if token_ids is None and entries and all(str(e.get("token", "")).startswith("token_id:") for e in entries):
        token_ids = [int(e["token"].split(":", 1)[1]) for e in entries]
    prompt_ids = data.get("prompt_token_ids") or choice.get("prompt_token_ids") or []
    reason = choice.get("finish_reason")
    if reason not in (None, "stop", "length", "tool_calls"):  # e.g. vLLM's "abort": not a finished sample
        raise PolicyError(f"the server ended the completion early (finish_reason {reason!r})")
    finish = "length" if reason == "length" else "stop"
    return Completion(text=text, prompt_ids=list(prompt_ids), token_ids=list(token_ids or []),
                      logprobs=logprobs if token_ids else [], finish_reason=finish)
