// The official OpenAI Node SDK through openai-proxy, across the API beyond chat: binary speech
// (streamed), multipart uploads (transcriptions, files) and a binary file round trip, and a resumed
// Responses stream. Run by the Rust tests with the same environment as sdk_node.mjs:
//   OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
//   OPENAI_PROXY_KEY       a wrapper key the proxy knows
//   EXPECTED_REPLY         the text the fake upstream answers with
//   HELD_MODEL_PREFIX      (set by the harness; only its `-held-` infix is used, in the speech model
//                          `gpt-4o-mini-tts-held-<token>`)
//   OPENAI_PROXY_TEST_UPSTREAM  the fake upstream's own base_url, where a held body is released
// The fake answers speech with 64 KiB whose byte i is (i ^ (i >> 8)) & 0xff, in 8 KiB writes.
// Every check throws on failure; one line per passing check.

import { randomBytes, randomUUID } from "node:crypto";

import OpenAI, { toFile } from "openai";

const expected = process.env.EXPECTED_REPLY;
const HELD_INFIX = "-held-";
if (!process.env.HELD_MODEL_PREFIX?.endsWith(HELD_INFIX)) throw new Error("HELD_MODEL_PREFIX has no -held-");
const client = new OpenAI({
  baseURL: process.env.OPENAI_PROXY_BASE_URL,
  apiKey: process.env.OPENAI_PROXY_KEY,
  maxRetries: 0,
  timeout: 20_000,
});

function check(name, condition, detail) {
  if (!condition) throw new Error(`${name}: ${JSON.stringify(detail)}`);
  console.log(`ok - ${name}`);
}

async function release(token) {
  const url = `${process.env.OPENAI_PROXY_TEST_UPSTREAM}/test-release/${token}`;
  const released = await fetch(url, { signal: AbortSignal.timeout(20_000) });
  return (await released.json()).held;
}

// Speech: a binary body, streamed. The fake sends its first 8 KiB write, then holds the rest until
// this client, holding those bytes, releases it.
const audio = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i ^ (i >> 8)) & 0xff));
const token = randomUUID();
const speech = await client.audio.speech.create({
  model: `gpt-4o-mini-tts${HELD_INFIX}${token}`,
  voice: "alloy",
  input: "Hello",
});
check("audio.speech content-type", speech.headers.get("content-type") === "audio/mpeg", [...speech.headers]);
const chunks = [];
let held;
let first = 0;
for await (const chunk of speech.body) {
  chunks.push(Buffer.from(chunk));
  if (held === undefined) {
    first = chunk.length;
    held = await release(token);
  }
}
const spoken = Buffer.concat(chunks);
check("audio.speech streams its first bytes before the rest is sent", held === true && first < audio.length, {
  held,
  first,
});
check("audio.speech bytes identical", spoken.equals(audio), spoken.length);

// Transcriptions: multipart/form-data, with a clip of every byte value.
const clip = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const transcription = await client.audio.transcriptions.create({
  model: "gpt-4o-transcribe",
  file: await toFile(clip, "clip.mp3", { type: "audio/mpeg" }),
});
check("audio.transcriptions.create", transcription.text === expected, transcription);
check("audio.transcriptions.create usage", transcription.usage?.total_tokens === 20, transcription.usage);

// Files: a binary round trip, every byte value, in more than one network write each way.
const payload = Buffer.concat([randomBytes(300 * 1024), clip]);
const file = await client.files.create({ file: await toFile(payload, "payload.bin"), purpose: "user_data" });
check("files.create", file.id.startsWith("file-") && file.bytes === payload.length, file);
const content = await client.files.content(file.id);
const back = Buffer.from(await content.arrayBuffer());
check("files.content bytes identical", back.equals(payload), back.length);

// Resuming a response's stream: only the events after `starting_after`.
const events = [];
for await (const event of await client.responses.retrieve("resp_stored2", { stream: true, starting_after: 3 })) {
  events.push(event);
}
check("responses.retrieve(stream: true, starting_after: 3) starts at 4", events[0]?.sequence_number === 4, events[0]);
check("the resumed stream completes", events.at(-1)?.type === "response.completed", events.at(-1));

console.error("all whole-API Node SDK checks passed");
