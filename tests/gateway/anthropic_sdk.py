"""The official Anthropic Python SDK against Chorus's gateway (`/v1/messages`).

Run by tests/tests/e2e/gateway_anthropic.rs with CHORUS_URL, CHORUS_KEY,
CHORUS_BROKE_KEY (a key whose balance is spent), MODEL (a model whose upstream calls
`get_weather` when asked) and SCRIPTED_MODEL. It prints one JSON object: what the SDK
returned for each call, or the SDK's exception type and fields. The Rust test
asserts on it.
"""

import json
import os

import anthropic
from anthropic import Anthropic

URL = os.environ["CHORUS_URL"]
MODEL = os.environ["MODEL"]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
ASK = [{"role": "user", "content": 'call get_weather {"city": "Oslo"}'}]


def client(key):
    # The SDK sends the key as `x-api-key`; no retries, so errors surface at once.
    return Anthropic(base_url=URL, api_key=key, max_retries=0, timeout=30)


def error(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "type": type(e).__name__,
            "status": e.status_code,
            "error_type": (body.get("error") or {}).get("type"),
            "message": e.message,
            "retry_after": e.response.headers.get("retry-after"),
        }
    return {"type": None}


def usage(u):
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}


def main():
    c = client(os.environ["CHORUS_KEY"])
    out = {}

    raw = c.messages.with_raw_response.create(
        model=os.environ["SCRIPTED_MODEL"],
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello"}],
    )
    done = raw.parse()
    out["message"] = {
        "run_id": raw.headers.get("x-chorus-run-id"),
        "type": done.type,
        "role": done.role,
        "text": "".join(b.text for b in done.content if b.type == "text"),
        "stop_reason": done.stop_reason,
        "usage": usage(done.usage),
    }

    events = []
    with c.messages.stream(
        model=os.environ["SCRIPTED_MODEL"],
        max_tokens=100,
        messages=[{"role": "user", "content": "hello again"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["stream"] = {
        "text": text,
        "stop_reason": final.stop_reason,
        "usage": usage(final.usage),
    }

    # Raw events, to check their order.
    for event in c.messages.create(
        model=os.environ["SCRIPTED_MODEL"], max_tokens=100, stream=True,
        messages=[{"role": "user", "content": "once more"}],
    ):
        events.append(event.type)
    out["events"] = events

    # A tool use round trip: streamed tool_use, this client runs the tool, the model answers.
    with c.messages.stream(model=MODEL, max_tokens=200, messages=ASK, tools=TOOLS) as stream:
        first = stream.get_final_message()
    use = next(b for b in first.content if b.type == "tool_use")
    second = c.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=TOOLS,
        messages=ASK + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
    )
    out["tools"] = {
        "stop_reason": first.stop_reason,
        "tool_use": {"id": use.id, "name": use.name, "input": use.input},
        "usage": usage(first.usage),
        "answer": "".join(b.text for b in second.content if b.type == "text"),
        "answer_stop_reason": second.stop_reason,
    }

    out["errors"] = {
        "bad_key": error(lambda: client("ck_not_a_key").messages.create(model=MODEL, max_tokens=10, messages=ASK)),
        "unknown_model": error(lambda: c.messages.create(model="nope/nothing", max_tokens=10, messages=ASK)),
        "spent_balance": error(
            lambda: client(os.environ["CHORUS_BROKE_KEY"]).messages.create(model=os.environ["SCRIPTED_MODEL"], max_tokens=10, messages=ASK)
        ),
        "bad_request": error(
            lambda: c.messages.create(
                model=MODEL, max_tokens=10,
                messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}],
            )
        ),
    }
    print(json.dumps(out))


main()
