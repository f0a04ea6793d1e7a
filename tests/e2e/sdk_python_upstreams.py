"""The official Python SDK through openai-proxy to four upstreams at once, one wrapper key each:
the default one (Bearer), an Azure-style one (api-key), one that takes no credential (with static
extras) and a Bedrock-style one (AWS SigV4 with the proxy's own credentials). Run by the Rust
tests in tests/it/upstreams.rs, which pass:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  UPSTREAM_KEYS          JSON: upstream name -> the wrapper key bound to it
  MAPPED_MODELS          JSON: upstream name -> the name its key's model_map sends for gpt-4o-mini
  EXPECTED_REPLY         the text every fake upstream answers with

Every fake echoes the model it received, so a reply naming the mapped model shows the mapping
reached the upstream and the answer came back as the upstream sent it.
"""

import json
import os
import sys

from openai import OpenAI

base_url = os.environ["OPENAI_PROXY_BASE_URL"]
keys = json.loads(os.environ["UPSTREAM_KEYS"])
mapped = json.loads(os.environ["MAPPED_MODELS"])
expected = os.environ["EXPECTED_REPLY"]
messages = [{"role": "user", "content": "Which upstream are you?"}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


for upstream, key in sorted(keys.items()):
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    served_by = raw.headers.get("x-openai-proxy-upstream")
    check(f"{upstream}: x-openai-proxy-upstream", served_by == upstream, served_by)
    chat = raw.parse()
    check(f"{upstream}: chat", chat.choices[0].message.content == expected, chat)
    check(f"{upstream}: the mapped model reached it", chat.model == mapped[upstream], chat.model)

    pieces, models = [], set()
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    check(f"{upstream}: chat stream", "".join(pieces) == expected, pieces)
    check(f"{upstream}: chat stream model", models == {mapped[upstream]}, models)

    emb = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    check(f"{upstream}: embeddings", emb.data[1].embedding == [1.5, -1.0, 0.25, 2.0], emb.data)

print("all upstream checks passed", file=sys.stderr)
