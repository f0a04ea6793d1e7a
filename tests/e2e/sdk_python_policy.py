"""Key policy as an SDK user meets it, through openai-proxy with its key map in Secrets Manager
(moto). Run by the Rust test `the_python_sdk_meets_key_policy_from_secrets_manager`:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  RESTRICTED_KEY         a wrapper key limited to the model gpt-4o-mini
  EXPIRED_KEY            a wrapper key whose expires_at has passed
  EXPECTED_REPLY         the text the fake upstream answers with
"""

import os
import sys

import openai
from openai import OpenAI

base_url = os.environ["OPENAI_PROXY_BASE_URL"]
expected = os.environ["EXPECTED_REPLY"]
messages = [{"role": "user", "content": "Hello"}]


def client(key):
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


restricted = client(os.environ["RESTRICTED_KEY"])
resp = restricted.chat.completions.create(model="gpt-4o-mini", messages=messages)
check("restricted key, allowed model", resp.choices[0].message.content == expected, resp)

try:
    restricted.chat.completions.create(model="gpt-4o", messages=messages)
except openai.PermissionDeniedError as err:
    check("restricted key, other model is 403", err.status_code == 403, err)
    check("restricted key, code model_not_allowed", err.code == "model_not_allowed", err.body)
else:
    raise AssertionError("a model outside the key's list was accepted")

try:
    restricted.embeddings.create(model="text-embedding-3-small", input="x")
except openai.PermissionDeniedError as err:
    check("restricted key, embeddings model outside the list is 403", err.status_code == 403, err)
else:
    raise AssertionError("an embeddings model outside the key's list was accepted")

models = [m.id for m in restricted.models.list()]
check("restricted key sees only its models", models == ["gpt-4o-mini"], models)

try:
    client(os.environ["EXPIRED_KEY"]).chat.completions.create(model="gpt-4o-mini", messages=messages)
except openai.AuthenticationError as err:
    check("expired key is 401", err.status_code == 401 and err.code == "invalid_api_key", err.body)
else:
    raise AssertionError("an expired key was accepted")

print("all policy checks passed", file=sys.stderr)
