// The official OpenAI Node SDK through openai-proxy. Run by the Rust tests with:
//   OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
//   OPENAI_PROXY_KEY       a wrapper key the proxy knows
//   EXPECTED_REPLY         the text the fake upstream answers with
//   HELD_MODEL_PREFIX      a model name that, with a token appended, the fake upstream streams up to
//                          its first word and then holds until released
//   OPENAI_PROXY_TEST_UPSTREAM  the fake upstream's own base_url, where a held stream is released
// Every check throws on failure; one line per passing check.

import { randomUUID } from "node:crypto";

import OpenAI from "openai";

const baseURL = process.env.OPENAI_PROXY_BASE_URL;
const expected = process.env.EXPECTED_REPLY;
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_PROXY_KEY, maxRetries: 0, timeout: 20_000 });
const messages = [{ role: "user", content: "Hello from Node" }];

function check(name, condition, detail) {
  if (!condition) throw new Error(`${name}: ${JSON.stringify(detail)}`);
  console.log(`ok - ${name}`);
}

const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
check("chat.completions.create", completion.choices[0].message.content === expected, completion);

// Streaming: the chunks must arrive as the upstream sends them, not all at the end. This stream's
// upstream holds everything after its first word until this client, holding that word, releases it.
const token = randomUUID();
const releaseUrl = `${process.env.OPENAI_PROXY_TEST_UPSTREAM}/test-release/${token}`;
const stream = await client.chat.completions.create({
  model: process.env.HELD_MODEL_PREFIX + token,
  messages,
  stream: true,
});
let text = "";
let held;
for await (const chunk of stream) {
  const piece = chunk.choices[0]?.delta?.content;
  if (piece) {
    text += piece;
    if (held === undefined) {
      const released = await fetch(releaseUrl, { signal: AbortSignal.timeout(20_000) });
      held = (await released.json()).held;
    }
  }
}
check("streaming text", text === expected, text);
check("streamed chunks arrived one by one", held === true, { held });

const embeddings = await client.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b"] });
check("embeddings count", embeddings.data.length === 2, embeddings);
check("embeddings values", JSON.stringify(embeddings.data[0].embedding) === "[0.5,-1,0.25,2]", embeddings.data[0]);

const bad = new OpenAI({ baseURL, apiKey: "wrapper-key-mallory", maxRetries: 0, timeout: 20_000 });
try {
  await bad.chat.completions.create({ model: "gpt-4o-mini", messages });
  throw new Error("an unknown key was accepted");
} catch (err) {
  check("unknown key is AuthenticationError", err instanceof OpenAI.AuthenticationError, String(err));
  check("error code", err.code === "invalid_api_key", err.error);
}
console.error("all Node SDK checks passed");
