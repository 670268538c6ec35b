"""The official OpenAI Python SDK against Chorus's gateway.

Run by tests/tests/e2e/gateway_openai.rs with CHORUS_URL (the server), CHORUS_KEY
(an API key with credits), CHORUS_BROKE_KEY (a key whose balance is spent), MODEL (a
model whose upstream calls `get_weather` when asked) and SCRIPTED_MODEL. It prints
one JSON object: what the SDK returned for each call, or the SDK's exception type
and fields. The Rust test asserts on it; this script asserts nothing itself.
"""

import json
import os

import openai
from openai import OpenAI

URL = os.environ["CHORUS_URL"] + "/v1"
MODEL = os.environ["MODEL"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK = [{"role": "user", "content": 'call get_weather {"city": "Oslo"}'}]


def client(key):
    # No retries: a 429 must surface as the SDK's exception, not be waited out.
    return OpenAI(base_url=URL, api_key=key, max_retries=0, timeout=30)


def error(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "type": type(e).__name__,
            "status": e.status_code,
            "code": e.code,
            "param": body.get("param"),
            "message": e.message,
            "retry_after": e.response.headers.get("retry-after"),
        }
    except openai.APIError as e:
        return {"type": type(e).__name__, "message": e.message}
    return {"type": None}


def usage(u):
    return None if u is None else {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def main():
    c = client(os.environ["CHORUS_KEY"])
    out = {}

    raw = c.chat.completions.with_raw_response.create(
        model=os.environ["SCRIPTED_MODEL"],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        temperature=0.2,
        max_completion_tokens=100,
    )
    done = raw.parse()
    out["chat"] = {
        "run_id": raw.headers.get("x-chorus-run-id"),
        "id": done.id,
        "object": done.object,
        "model": done.model,
        "content": done.choices[0].message.content,
        "role": done.choices[0].message.role,
        "finish_reason": done.choices[0].finish_reason,
        "usage": usage(done.usage),
    }

    text, chunks, finish, last_usage, run_id = "", 0, None, None, None
    with c.chat.completions.with_streaming_response.create(
        model=os.environ["SCRIPTED_MODEL"],
        messages=[{"role": "user", "content": "hello again"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        run_id = response.headers.get("x-chorus-run-id")
        for chunk in response.parse():
            chunks += 1
            if chunk.usage is not None:
                last_usage = usage(chunk.usage)
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    out["stream"] = {"run_id": run_id, "text": text, "chunks": chunks, "finish_reason": finish, "usage": last_usage}

    # A tool round trip: the model asks, this client runs the tool, the model answers.
    first = c.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = ""
    for chunk in c.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, stream=True):
        for choice in chunk.choices:
            answer += choice.delta.content or ""
    streamed_call = None
    for chunk in c.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, stream=True):
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                streamed_call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
            if choice.finish_reason:
                streamed_call = dict(streamed_call or {}, finish_reason=choice.finish_reason)
    out["tools"] = {
        "finish_reason": first.choices[0].finish_reason,
        "call": {"id": call.id, "name": call.function.name, "arguments": json.loads(call.function.arguments)},
        "usage": usage(first.usage),
        "answer": answer,
        "streamed_call": streamed_call,
    }

    out["models"] = [m.id for m in c.models.list()]

    out["errors"] = {
        "bad_key": error(lambda: client("ck_not_a_key").chat.completions.create(model=MODEL, messages=ASK)),
        "unknown_model": error(lambda: c.chat.completions.create(model="nope/nothing", messages=ASK)),
        "spent_balance": error(
            lambda: client(os.environ["CHORUS_BROKE_KEY"]).chat.completions.create(model=os.environ["SCRIPTED_MODEL"], messages=ASK)
        ),
        "n": error(lambda: c.chat.completions.create(model=MODEL, messages=ASK, n=2)),
        "bad_key_models": error(lambda: client("ck_not_a_key").models.list()),
    }
    print(json.dumps(out))


main()
