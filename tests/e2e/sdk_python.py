"""The official OpenAI Python SDK through openai-proxy, used exactly as a user of the original
FastAPI proxy would use it. Run by the Rust test `sdk_python`, which starts a fake upstream and the
proxy binary and passes their coordinates in the environment:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  OPENAI_PROXY_KEY       a wrapper key the proxy knows
  EXPECTED_REPLY         the text the fake upstream answers with
  HELD_MODEL_PREFIX      a model name that, with a token appended, the fake upstream streams up to
                         its first word and then holds until released
  OPENAI_PROXY_TEST_UPSTREAM  the fake upstream's own base_url, where a held stream is released

Every check raises on failure; the script prints one line per passing check.
"""

import base64
import json
import os
import struct
import sys
import urllib.request
import uuid

import openai
from openai import OpenAI

base_url = os.environ["OPENAI_PROXY_BASE_URL"]
wrapper_key = os.environ["OPENAI_PROXY_KEY"]
expected = os.environ["EXPECTED_REPLY"]

# max_retries=0: a failure must show as a failure, not as a retried success.
client = OpenAI(base_url=base_url, api_key=wrapper_key, max_retries=0, timeout=20)
messages = [{"role": "user", "content": "Hello from openai-proxy!"}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


# Chat, non-streaming.
resp = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
check("chat.completions.create", resp.choices[0].message.content == expected, resp)
check("usage is parsed", resp.usage is not None and resp.usage.total_tokens == 14, resp.usage)

# Chat, stream=True: raw chunks, each with .choices.
stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
pieces = []
chunk_count = 0
for chunk in stream:
    chunk_count += 1
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
check("create(stream=True) text", "".join(pieces) == expected, pieces)
check("create(stream=True) arrives as several chunks", chunk_count > 3, chunk_count)

# The chunks must arrive as the upstream sends them, not at the end: this stream's upstream holds
# everything after its first word until this client, holding that word, releases it.
token = uuid.uuid4().hex
held_model = os.environ["HELD_MODEL_PREFIX"] + token
release_url = f"{os.environ['OPENAI_PROXY_TEST_UPSTREAM']}/test-release/{token}"
held, pieces = None, []
for chunk in client.chat.completions.create(model=held_model, messages=messages, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
        if held is None:
            with urllib.request.urlopen(release_url, timeout=20) as released:
                held = json.load(released)["held"]
check("streamed chunks arrive one by one", held is True, held)
check("the held stream's text", "".join(pieces) == expected, pieces)

# The stream helper: its events have a .type, not .choices (the seed README got this wrong).
deltas = []
with client.chat.completions.stream(model="gpt-4o-mini", messages=messages) as helper:
    for event in helper:
        if event.type == "content.delta":
            deltas.append(event.delta)
    final = helper.get_final_completion()
check("chat.completions.stream deltas", "".join(deltas) == expected, deltas)
check("chat.completions.stream final", final.choices[0].message.content == expected, final)

# Embeddings: the SDK asks for base64 by default and decodes it to floats.
emb = client.embeddings.create(model="text-embedding-3-small", input=["fast and minimal proxy", "second"])
check("embeddings.create count", len(emb.data) == 2, emb)
check("embeddings.create values", emb.data[0].embedding == [0.5, -1.0, 0.25, 2.0], emb.data[0].embedding)
check("embeddings.create second", emb.data[1].embedding == [1.5, -1.0, 0.25, 2.0], emb.data[1].embedding)
raw = client.embeddings.with_raw_response.create(
    model="text-embedding-3-small", input="x", encoding_format="base64"
)
packed = base64.b64decode(raw.http_response.json()["data"][0]["embedding"])
check("embeddings base64 bytes", struct.unpack("<4f", packed) == (0.5, -1.0, 0.25, 2.0), packed)

# Models.
models = [m.id for m in client.models.list()]
check("models.list", models == ["gpt-4o-mini", "text-embedding-3-small"], models)

# Responses API, streaming.
texts = []
with client.responses.stream(model="gpt-4o-mini", input="Say hello") as rstream:
    for event in rstream:
        if event.type == "response.output_text.delta":
            texts.append(event.delta)
check("responses.stream text", "".join(texts) == expected, texts)

# A wrong wrapper key is the SDK's usual AuthenticationError.
bad = OpenAI(base_url=base_url, api_key="wrapper-key-mallory", max_retries=0, timeout=20)
try:
    bad.chat.completions.create(model="gpt-4o-mini", messages=messages)
except openai.AuthenticationError as err:
    check("unknown key raises AuthenticationError", err.status_code == 401, err)
    check("error code", err.code == "invalid_api_key", err.body)
else:
    raise AssertionError("unknown key was accepted")

print("all SDK checks passed", file=sys.stderr)
