// The official OpenAI Node SDK against Chorus's gateway. Run by
// tests/tests/e2e/gateway_openai.rs with the same environment as openai_sdk.py; prints
// one JSON object of what the SDK returned (the Rust test asserts on it).
import OpenAI from "openai";

const URL = `${process.env.CHORUS_URL}/v1`;
const MODEL = process.env.MODEL;
const TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city.",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const ASK = [{ role: "user", content: 'call get_weather {"city": "Oslo"}' }];

const client = (apiKey) => new OpenAI({ baseURL: URL, apiKey, maxRetries: 0, timeout: 30_000 });

async function error(call) {
  try {
    await call();
  } catch (e) {
    return {
      type: e.constructor.name,
      status: e.status ?? null,
      code: e.code ?? null,
      message: e.message,
      retry_after: e.headers?.get?.("retry-after") ?? null,
    };
  }
  return { type: null };
}

const usage = (u) => (u ? { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens } : null);

const c = client(process.env.CHORUS_KEY);
const out = {};

const { data: done, response } = await c.chat.completions
  .create({ model: process.env.SCRIPTED_MODEL, messages: [{ role: "user", content: "hello" }] })
  .withResponse();
out.chat = {
  run_id: response.headers.get("x-chorus-run-id"),
  content: done.choices[0].message.content,
  finish_reason: done.choices[0].finish_reason,
  usage: usage(done.usage),
};

let text = "";
let finish = null;
let lastUsage = null;
const stream = await c.chat.completions.create({
  model: process.env.SCRIPTED_MODEL,
  messages: [{ role: "user", content: "hello again" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) lastUsage = usage(chunk.usage);
  for (const choice of chunk.choices) {
    text += choice.delta.content ?? "";
    finish = choice.finish_reason ?? finish;
  }
}
out.stream = { text, finish_reason: finish, usage: lastUsage };

// A tool round trip with the SDK's stream helper, which assembles tool calls.
const first = await c.chat.completions.stream({ model: MODEL, messages: ASK, tools: TOOLS }).finalChatCompletion();
const call = first.choices[0].message.tool_calls[0];
const second = await c.chat.completions.create({
  model: MODEL,
  tools: TOOLS,
  messages: [...ASK, first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "sunny" }],
});
out.tools = {
  finish_reason: first.choices[0].finish_reason,
  call: { name: call.function.name, arguments: JSON.parse(call.function.arguments) },
  answer: second.choices[0].message.content,
};

const models = [];
for await (const m of c.models.list()) models.push(m.id);
out.models = models;

out.errors = {
  bad_key: await error(() => client("ck_not_a_key").chat.completions.create({ model: MODEL, messages: ASK })),
  unknown_model: await error(() => c.chat.completions.create({ model: "nope/nothing", messages: ASK })),
  spent_balance: await error(() =>
    client(process.env.CHORUS_BROKE_KEY).chat.completions.create({ model: process.env.SCRIPTED_MODEL, messages: ASK })),
};
console.log(JSON.stringify(out));
