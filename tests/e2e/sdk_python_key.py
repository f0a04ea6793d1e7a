"""One chat completion through openai-proxy with the official Python SDK and one wrapper key, as
a client given a key by `openai-proxy keys create` or `rotate` would make it. Run by the Rust
tests in tests/it/keys_cli.rs, which pass:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  OPENAI_PROXY_KEY       the wrapper key
  EXPECTED_REPLY         the text the fake upstream answers with
  EXPECT                 "reply" (default): the completion succeeds with that text;
                         "401": the proxy refuses the key (the SDK's AuthenticationError)

Every check raises on failure; the script prints one line per passing check.
"""

import os

import openai
from openai import OpenAI

expect = os.environ.get("EXPECT", "reply")
# max_retries=0: a failure must show as a failure, not as a retried success.
client = OpenAI(
    base_url=os.environ["OPENAI_PROXY_BASE_URL"], api_key=os.environ["OPENAI_PROXY_KEY"], max_retries=0, timeout=20
)
messages = [{"role": "user", "content": "Hello with a key from openai-proxy keys!"}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}", flush=True)


try:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
except openai.AuthenticationError as err:
    check("the key is refused with 401", expect == "401", err)
    check("the refusal is OpenAI-shaped", isinstance(err.body, dict) and "message" in err.body, err.body)
else:
    check("the key is accepted", expect == "reply", completion)
    check("chat.completions.create", completion.choices[0].message.content == os.environ["EXPECTED_REPLY"], completion)
