"""The openai back end against our own OpenAI-compatible server (`agentgym serve`) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import signal
import socket
import time

import aiohttp
import pytest
from aiohttp import web

import agentgym as ag
from agentgym.errors import PolicyError
from agentgym.policies import OpenAIPolicy, PolicyServer, SamplingParams, load_policy
from agentgym.policies.server import serve_forever
from agentgym.rollout import RolloutRunner
from agentgym.types import Message, ToolCall, ToolSpec

ADD = ToolSpec(name="add", description="Add n to the value.",
               parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
CONV = [Message(role="system", content="You are terse."), Message(role="user", content="Say hello to Ada.")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def stand_in(chat):
    """A stand-in remote server on loopback serving model ``m``, whose chat completions ``chat`` answers."""
    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def vllm_answer(finish_reason: str = "length") -> dict:
    return {"choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": "add(n=1)"},
                         "logprobs": {"content": [{"token": "token_id:5", "logprob": -0.1},
                                                  {"token": "token_id:9", "logprob": -0.2}]}}],
            "prompt_token_ids": [1, 2, 3]}


@pytest.fixture
async def server(smollm2):
    async with PolicyServer(smollm2, served_name="smollm2", port=0, max_wait=0.05) as srv:
        yield srv


@pytest.mark.slow
async def test_chat_completions_carry_the_servers_exact_tokens(server, smollm2):
    params = SamplingParams(temperature=0, max_new_tokens=8)
    async with OpenAIPolicy(server.url, "smollm2") as remote:
        (got,) = await remote.generate([CONV], [ADD], params)
    (local,) = await smollm2.generate([CONV], [ADD], params)
    assert got.text == local.text and got.token_ids == local.token_ids
    assert got.prompt_ids == local.prompt_ids == smollm2.render(CONV, [ADD])
    assert got.logprobs == pytest.approx(local.logprobs, abs=1e-4)
    assert got.finish_reason == local.finish_reason


@pytest.mark.slow
async def test_concurrent_requests_share_one_batch_and_the_model_is_found(server):
    async with load_policy(f"openai:{server.url}") as remote:  # the only served model is used
        params = SamplingParams(temperature=1.0, max_new_tokens=4, seed=1)
        outs = await asyncio.gather(*(remote.generate([CONV], None, params) for _ in range(4)))
        assert remote.model == "smollm2"
    assert all(len(o[0].token_ids) == len(o[0].logprobs) >= 1 for o in outs)
    assert max(server.batch_sizes) > 1


@pytest.mark.slow
async def test_completions_and_models_endpoints(server, smollm2):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["smollm2"]
        body = {"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0,
                "logprobs": 0, "return_tokens_as_token_ids": True}
        async with http.post(f"{server.url}/completions", json=body) as r:
            data = await r.json()
        choice = data["choices"][0]
        assert choice["prompt_token_ids"] == smollm2.tokenizer("The capital of France is")["input_ids"]
        assert smollm2.tokenizer.decode(choice["token_ids"], skip_special_tokens=True) == choice["text"]
        assert choice["logprobs"]["tokens"] == [f"token_id:{t}" for t in choice["token_ids"]]
        assert data["usage"]["completion_tokens"] == len(choice["token_ids"])
        async with http.post(f"{server.url}/chat/completions", json={"model": "smollm2", "messages": [], "stream": True}) as r:
            assert r.status == 400 and "streaming" in (await r.json())["error"]["message"]
        async with http.post(f"{server.url}/chat/completions", json={"model": "smollm2", "messages": "hi"}) as r:
            assert r.status == 400
        async with http.post(f"{server.url}/chat/completions", json={"messages": []}) as r:
            assert r.status == 400 and 'needs a "model" field' in (await r.json())["error"]["message"]
        hello = [{"role": "user", "content": "hi"}]
        for extra, message in (({"temperature": "hot"}, "'temperature' must be a number, got 'hot'"),
                               ({"logprobs": True, "top_logprobs": 2}, "top_logprobs is not supported"),
                               ({"tools": [{"type": "function"}]}, "'tools' must be a list of")):
            body = {"model": "smollm2", "messages": hello, "max_tokens": 1, **extra}
            async with http.post(f"{server.url}/chat/completions", json=body) as r:
                assert r.status == 400 and message in (await r.json())["error"]["message"]
        for logprobs, wanted in ((False, False), (0, True), (None, False)):
            body = {"model": "smollm2", "prompt": [1, 2, 3], "max_tokens": 1, "logprobs": logprobs}
            async with http.post(f"{server.url}/completions", json=body) as r:
                assert ((await r.json())["choices"][0]["logprobs"] is not None) == wanted


# a history of calls that SmolLM2 continues with the same call (greedy): a real model's tool call
ADDING = [{"role": "system", "content": "You are a calculator. Use the add tool."}]
for _i in range(3):
    ADDING += [{"role": "user", "content": "Add 1."},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": f"c{_i}", "type": "function", "function": {"name": "add", "arguments": '{"n": 1}'}}]},
               {"role": "tool", "tool_call_id": f"c{_i}", "content": f"The value is {_i + 1}."}]
ADDING.append({"role": "user", "content": "Add 1."})
CALL = '<tool_call>{"name": "add", "arguments": {"n": 1}}</tool_call>'


@pytest.mark.slow
async def test_openai_clients_get_tool_calls_stop_strings_cut_and_clear_refusals(smollm2):
    async with PolicyServer(smollm2, served_name="smollm2", port=0, tool_call_parser="hermes") as server, \
            aiohttp.ClientSession() as http:
        async def post(path, **body):
            async with http.post(f"{server.url}/{path}", json={"model": "smollm2", **body}) as r:
                return r.status, await r.json()

        chat = {"messages": ADDING, "tools": [ADD.to_openai()], "temperature": 0, "max_tokens": 30}
        status, data = await post("chat/completions", **chat)
        assert status == 200, data
        (choice,) = data["choices"]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["function"] == {"name": "add", "arguments": '{"n": 1}'}
        assert smollm2.tokenizer.decode(choice["token_ids"], skip_special_tokens=True) == CALL  # as sampled
        assert smollm2.tokenizer.decode(data["prompt_token_ids"]).count(CALL) == 3  # the history's calls, as text
        status, data = await post("chat/completions", **chat, tool_choice="none")  # left in the text
        assert data["choices"][0]["message"] == {"role": "assistant", "content": CALL}
        history = [Message(role=m["role"], content=m["content"] or "", tool_call_id=m.get("tool_call_id"),
                           tool_calls=[ToolCall(name="add", arguments={"n": 1}, id=c["id"]) for c in m["tool_calls"]]
                           if m.get("tool_calls") else None) for m in ADDING]
        params = SamplingParams(temperature=0, max_new_tokens=30)
        for choice in ("none", "auto"):  # raw text (agentgym's default), or the parsed call written back as text
            async with OpenAIPolicy(server.url, "smollm2", tool_choice=choice) as remote:
                (got,) = await remote.generate([history], [ADD], params)
            assert got.text == CALL and smollm2.tokenizer.decode(got.token_ids, skip_special_tokens=True) == CALL
        # a stop string is cut from the text, as OpenAI does, unless the request keeps it (vLLM's field)
        stop = {**chat, "stop": ["</tool_call>"], "tool_choice": "none"}
        _, cut = await post("chat/completions", **stop)
        _, kept = await post("chat/completions", **stop, include_stop_str_in_output=True)
        assert cut["choices"][0]["message"]["content"] == CALL.removesuffix("</tool_call>")
        assert kept["choices"][0]["message"]["content"] == CALL and cut["choices"][0]["finish_reason"] == "stop"
        assert (await post("chat/completions", messages=[{"role": "developer", "content": "Be terse."}, *ADDING[-1:]],
                           max_tokens=1))[0] == 200  # newer OpenAI clients' name for the system role
        status, data = await post("completions", prompt=[1, 2, 3], n=2, max_tokens=1)
        assert data["usage"]["prompt_tokens"] == 3  # the prompt once, however many samples
        assert [server._default_max_tokens([[1] * n], 16) for n in (10, 8180, 8192)] == [16, 12, 1]  # no max_tokens:
        # the default, or what the context leaves when less (8192 tokens here; a full prompt is then refused)
        hello = [{"role": "user", "content": "hi"}]
        for path, body, message in [
            ("chat/completions", {"messages": hello, "tools": [ADD.to_openai()], "tool_choice": "required"},
             "tool_choice 'required' is not supported: agentgym serve cannot force a tool call"),
            ("chat/completions", {"messages": hello, "response_format": {"type": "json_object"}},
             "response_format is not supported"),
            ("chat/completions", {"messages": hello, "stop": 5}, "'stop' must be a non-empty string or a list of them"),
            ("chat/completions", {"messages": hello, "stop": [""]}, "'stop' must be a non-empty string"),
            ("chat/completions", {"messages": [{"role": "robot", "content": "x"}]},
             "a message's role must be one of system, user, assistant, tool (or developer), got 'robot'"),
            ("completions", {"prompt": "x", "echo": True}, "echo is not supported"),
            ("completions", {"prompt": "x", "logprobs": 2}, "logprobs: 2 asks for top alternatives"),
        ]:
            status, data = await post(path, **body)
            assert status == 400 and message in data["error"]["message"], data
        async with http.get(f"{server.url}/models/smollm2") as r:  # what client.models.retrieve reads
            assert r.status == 200 and (await r.json())["id"] == "smollm2"
        for method, path, status in (("GET", "/models/nope", 404), ("POST", "/embeddings", 404), ("GET", "/completions", 405)):
            async with http.request(method, server.url + path) as r:
                assert r.status == status and (await r.json())["error"]["code"] == status  # JSON, as the API's errors
                assert r.headers.get("Allow") == ("POST" if status == 405 else None)
        status, data = await post("completions", prompt=[1, 2, 3], max_tokens=1, logprobs=True)  # as logprobs: 0
        assert status == 200 and len(data["choices"][0]["logprobs"]["token_logprobs"]) == 1


@pytest.mark.slow
async def test_bad_requests_are_400s_and_spoil_no_batch_mate(server):
    good = {"model": "smollm2", "prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0}
    bad = [{**good, "prompt": [10 ** 9]}, {**good, "seed": 1.5}, {**good, "seed": 2 ** 70}, {**good, "seed": "x"},
           {**good, "max_tokens": 0}, {**good, "max_tokens": 10 ** 6}]
    async with aiohttp.ClientSession() as http:
        async def post(body):
            async with http.post(f"{server.url}/completions", json=body) as r:
                return r.status, await r.json()

        (status, data), *rejected = await asyncio.gather(post(good), *map(post, bad))
    assert status == 200 and len(data["choices"][0]["token_ids"]) == 2
    assert [s for s, _ in rejected] == [400] * len(bad)
    assert "maximum context length is 8192 tokens" in rejected[-1][1]["error"]["message"]


@pytest.mark.slow
async def test_a_request_whose_client_hung_up_is_not_generated(smollm2):
    body = {"model": "smollm2", "prompt": [1, 2, 3], "max_tokens": 2}
    async with PolicyServer(smollm2, served_name="smollm2", port=0, max_wait=1.0) as srv:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(asyncio.TimeoutError):
                async with http.post(f"{srv.url}/completions", json=body, timeout=aiohttp.ClientTimeout(total=0.2)):
                    pass
        await asyncio.sleep(1.3)  # past the batch's collection window
        assert srv.batch_sizes == []


async def test_a_generation_whose_client_hung_up_stops_and_frees_the_model(smollm2):
    body = {"model": "smollm2", "prompt": [1, 2, 3], "max_tokens": 4000, "temperature": 0}
    async with PolicyServer(smollm2, served_name="smollm2", port=0, max_wait=0.01) as srv:
        async with aiohttp.ClientSession() as http:
            answer = asyncio.ensure_future(http.post(f"{srv.url}/completions", json=body))
            while not smollm2._lock.locked():  # the request is being generated: the model is taken
                await asyncio.sleep(0.02)
            answer.cancel()  # the client hangs up
            await asyncio.gather(answer, return_exceptions=True)
        started = time.perf_counter()
        free = await asyncio.to_thread(smollm2._lock.acquire, True, 60)  # the thread stops at its next token
        assert free and time.perf_counter() - started < 10.0  # 4000 tokens would take minutes
        smollm2._lock.release()


async def test_a_request_waiting_when_the_server_stops_gets_a_503(smollm2):
    body = {"model": "smollm2", "prompt": [1, 2, 3], "max_tokens": 400}
    srv = PolicyServer(smollm2, served_name="smollm2", port=0, max_wait=0.01)
    await srv.start()
    async with aiohttp.ClientSession() as http:
        answer = asyncio.ensure_future(http.post(f"{srv.url}/completions", json=body))
        while not srv.batch_sizes:  # the request is being generated
            await asyncio.sleep(0.02)
        await srv.aclose()
        resp = await answer
        assert resp.status == 503 and (await resp.json())["error"]["message"] == "the server is shutting down"


async def test_sigterm_stops_the_server_and_a_waiting_request_gets_a_503(smollm2):
    body = {"model": "smollm2", "prompt": [1, 2, 3], "max_tokens": 400}
    srv = PolicyServer(smollm2, served_name="smollm2", port=0, max_wait=0.01)
    started = asyncio.Event()
    serving = asyncio.ensure_future(serve_forever(srv, lambda s: started.set()))
    await started.wait()
    async with aiohttp.ClientSession() as http:
        answer = asyncio.ensure_future(http.post(f"{srv.url}/completions", json=body))
        while not srv.batch_sizes:  # the request is being generated
            await asyncio.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # without our handler this would end the test process
        await asyncio.wait_for(serving, 30)
        resp = await answer
        assert resp.status == 503 and (await resp.json())["error"]["message"] == "the server is shutting down"


@pytest.mark.slow
async def test_wrong_model_name_is_a_clear_policy_error(server):
    async with OpenAIPolicy(server.url, "gpt-7") as remote:
        with pytest.raises(PolicyError, match=r"model 'gpt-7' is not served at .*it serves \['smollm2'\]"):
            await remote.generate([CONV], None, SamplingParams(max_new_tokens=2))


async def test_wrong_url_is_a_clear_policy_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAIPolicy(url, "m", max_retries=1, backoff=0.01) as remote:
        with pytest.raises(PolicyError, match="cannot reach an OpenAI-compatible server at .* after 2 attempts"):
            await remote.generate([CONV], None, SamplingParams())
    with pytest.raises(PolicyError, match="must start with http"):
        OpenAIPolicy("localhost:8000", "m")


async def test_a_url_without_v1_gets_a_hint():
    async def chat(request):
        return web.json_response(vllm_answer())

    async with stand_in(chat) as url:
        root = url.removesuffix("/v1")
        async with OpenAIPolicy(root, "m") as remote:
            with pytest.raises(PolicyError, match=f"HTTP 404.*did you mean {root}/v1\\?"):
                await remote.check()


async def test_retries_on_overload_and_reads_vllm_token_fields():
    """A stand-in remote server that is overloaded twice, then answers the way vLLM does."""
    hits = {"chat": 0}

    async def chat(request):
        hits["chat"] += 1
        if hits["chat"] <= 2:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return web.json_response(vllm_answer())

    async with stand_in(chat) as url:
        async with OpenAIPolicy(url, "m", backoff=0.01) as remote:
            (c,) = await remote.generate([CONV], [ADD], SamplingParams())
        assert hits["chat"] == 3
        assert (c.text, c.token_ids, c.logprobs, c.prompt_ids, c.finish_reason) == (
            "add(n=1)", [5, 9], [-0.1, -0.2], [1, 2, 3], "length")
        hits["chat"] = 0
        async with OpenAIPolicy(url, "m", max_retries=1, backoff=0.01) as remote:
            with pytest.raises(PolicyError, match=r"still failing after 2 attempts \(HTTP 503: busy\)"):
                await remote.generate([CONV], None, SamplingParams())


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_rate_limit_is_retried_no_sooner_than_retry_after(form):
    hits: list[float] = []

    async def chat(request):
        hits.append(time.perf_counter())
        if len(hits) == 1:
            # an HTTP date has whole seconds: 2 s ahead is at least 1 s ahead
            later = email.utils.formatdate(time.time() + 2, usegmt=True) if form == "http-date" else "1"
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": later})
        return web.json_response(vllm_answer())

    async with stand_in(chat) as url, OpenAIPolicy(url, "m", backoff=0.01) as remote:
        (c,) = await remote.generate([CONV], None, SamplingParams())
    assert c.token_ids == [5, 9] and len(hits) == 2 and hits[1] - hits[0] >= 0.95


async def test_a_response_cut_short_is_retried_and_an_aborted_one_is_an_error():
    hits = {"chat": 0}

    async def chat(request):
        hits["chat"] += 1
        if hits["chat"] == 1:  # the server dies mid-body
            response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "500"})
            await response.prepare(request)
            await response.write(b'{"choices": [')
            request.transport.close()
            return response
        return web.json_response(vllm_answer("abort" if hits["chat"] == 3 else "stop"))

    async with stand_in(chat) as url, OpenAIPolicy(url, "m", backoff=0.01) as remote:
        (c,) = await remote.generate([CONV], None, SamplingParams())
        assert hits["chat"] == 2 and c.finish_reason == "stop"
        with pytest.raises(PolicyError, match="ended the completion early \\(finish_reason 'abort'\\)"):
            await remote.generate([CONV], None, SamplingParams())


async def test_a_strict_server_that_rejects_vllm_fields_is_asked_without_them():
    rejected = []

    async def chat(request):  # as api.openai.com answers unknown arguments
        body = await request.json()
        extra = sorted(k for k in body if k.startswith(("return_", "include_", "skip_")))
        if extra:
            rejected.append(extra)
            return web.json_response({"error": {"message": f"Unrecognized request argument supplied: {extra[0]}"}},
                                     status=400)
        return web.json_response({"choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": "hi"}}]})

    async with stand_in(chat) as url, OpenAIPolicy(url, "m") as remote:
        for _ in range(2):
            (c,) = await remote.generate([CONV], None, SamplingParams())
            assert c.text == "hi" and c.token_ids == []
    assert len(rejected) == 1  # asked once with them, never again


def test_one_policy_serves_runs_on_successive_event_loops():
    async def chat(request):
        return web.json_response(vllm_answer())

    async def one_run(remote):
        async with stand_in(chat) as url:
            remote.base_url = url  # a fresh server per loop; the policy (and its session) is the same
            return await remote.generate([CONV], None, SamplingParams())

    remote = OpenAIPolicy("http://127.0.0.1:9/v1", "m", backoff=0.01)
    first, second = asyncio.run(one_run(remote)), asyncio.run(one_run(remote))
    assert first[0].token_ids == second[0].token_ids == [5, 9]
    asyncio.run(remote.aclose())


class Counter(ag.Environment):
    async def reset(self, task: ag.Task) -> str:
        self.value = 0
        return "Reach 3 by calling add. The value is 0."

    @ag.tool
    def add(self, n: int) -> str:
        """Add n to the value."""
        self.value += n
        return f"The value is {self.value}."

    def state_key(self) -> str:
        return str(self.value)


@pytest.mark.slow
async def test_rollout_through_the_server_records_tokens(server, smollm2):
    remote = OpenAIPolicy(server.url, "smollm2")
    runner = RolloutRunner(remote, Counter, n=2, max_turns=2, sampling=SamplingParams(max_new_tokens=10, seed=5))
    try:
        result = await runner.run([ag.Task(id="t", env="counter-v0")])
    finally:
        await remote.aclose()
    assert [t.error for t in result.trajectories] == [None, None]
    for step in (s for t in result.trajectories for s in t.steps):
        assert smollm2.tokenizer.decode(step.response_ids, skip_special_tokens=True) == step.response
        assert step.prompt_ids == smollm2.render(step.messages, Counter().tools)
        assert len(step.logprobs) == len(step.response_ids)


def test_serve_reports_a_busy_port_before_loading_the_model_and_a_bad_policy_as_usage():
    from typer.testing import CliRunner

    from agentgym.cli import app

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        # the policy path does not exist: reaching it would be a different error
        busy = CliRunner().invoke(app, ["serve", "--policy", "hf:/nowhere", "--port", str(port)])
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.output, busy.output
    unknown = CliRunner().invoke(app, ["serve", "--policy", "hf:/nowhere", "--host", "999.1.1.1", "--port", "0"])
    assert unknown.exit_code == 1 and "cannot listen on 999.1.1.1:0" in unknown.output, unknown.output
    bad = CliRunner().invoke(app, ["serve", "--policy", "expert", "--port", "0"])
    assert bad.exit_code == 2 and "needs a local model policy" in bad.output, bad.output
    for flags, message in ((["--port", "99999"], "Invalid value for '--port'"),
                           (["--max-wait", "nan"], "nan is not a number of seconds")):
        usage = CliRunner().invoke(app, ["serve", "--policy", "hf:/nowhere", *flags])
        assert usage.exit_code == 2 and message in usage.output, usage.output
