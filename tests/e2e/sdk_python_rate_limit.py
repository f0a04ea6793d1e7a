"""A requests-per-minute limit as an SDK user meets it: the official Python SDK through openai-proxy
with a key limited to REQUESTS_PER_MINUTE requests, calling until it is refused. Run by the Rust
test in tests/it/limits_sdk.rs (under `cargo lambda watch`), which passes:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  OPENAI_PROXY_KEY       a wrapper key limited to REQUESTS_PER_MINUTE requests per minute only
  REQUESTS_PER_MINUTE    that limit
  EXPECTED_REPLY         the text the fake upstream answers with

max_retries=0: the refusal carries retry-after (to the minute's end), which the SDK would honour
by retrying. Every response is read to its end (under `cargo lambda watch` an unread one holds the
next invocation). Every check raises on failure; the script prints one line per passing check.
"""

import os
import re
import sys
import time

import openai
from openai import OpenAI

base_url = os.environ["OPENAI_PROXY_BASE_URL"]
limit = int(os.environ["REQUESTS_PER_MINUTE"])
expected = os.environ["EXPECTED_REPLY"]
messages = [{"role": "user", "content": "Count me."}]
# OpenAI's reset format (Go durations): 250ms, 12s, 6m0s, 10h41m21s.
RESET = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+s)$")

attempts = []
http_client = openai.DefaultHttpxClient(event_hooks={"request": [lambda request: attempts.append(request.url)]})
client = OpenAI(
    base_url=base_url, api_key=os.environ["OPENAI_PROXY_KEY"], max_retries=0, timeout=20, http_client=http_client
)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}", flush=True)


def seconds_left_in_minute():
    return 60 - time.time() % 60


# Every call must fall in one UTC minute (one window): near its end, wait for the next.
if seconds_left_in_minute() < 15:
    time.sleep(seconds_left_in_minute() + 0.5)

refused = None
for call in range(1, limit + 3):
    before = len(attempts)
    try:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    except openai.RateLimitError as err:
        refused, left = (call, err), seconds_left_in_minute()
        break
    completion = raw.parse()
    check(f"call {call}: one attempt", len(attempts) == before + 1, len(attempts) - before)
    check(f"call {call}: the reply", completion.choices[0].message.content == expected, completion)
    headers = raw.headers
    check(f"call {call}: x-ratelimit-limit-requests", headers.get("x-ratelimit-limit-requests") == str(limit), headers)
    check(
        f"call {call}: x-ratelimit-remaining-requests",
        headers.get("x-ratelimit-remaining-requests") == str(limit - call),
        headers,
    )
    reset = headers.get("x-ratelimit-reset-requests", "")
    check(f"call {call}: x-ratelimit-reset-requests", RESET.match(reset) is not None, reset)
    # The key has no token limit: no token trio, not even the upstream's own.
    check(
        f"call {call}: no x-ratelimit-*-tokens",
        not any(name.endswith("-tokens") for name in headers if name.startswith("x-ratelimit-")),
        headers,
    )

check("a call was refused", refused is not None, attempts)
call, err = refused
check("the first refused call is the one past the limit", call == limit + 1, call)
check("refused: one attempt", len(attempts) == limit + 1, len(attempts))
check("refused: code rate_limit_exceeded", err.code == "rate_limit_exceeded", err.body)
check("refused: type requests", err.type == "requests", err.body)
message = err.body.get("message", "") if isinstance(err.body, dict) else ""
check("refused: the message names the limit", "requests per minute of this API key" in message, message)
headers = err.response.headers
retry_after = headers.get("retry-after", "")
whole = retry_after.isdigit() and 1 <= int(retry_after) <= 60
check("refused: retry-after is whole seconds, 1 to 60", whole, retry_after)
# Rounded up to whole seconds, to the minute's end as this clock sees it.
check("refused: retry-after runs to the minute's end", abs(int(retry_after) - left) <= 2, (retry_after, left))
check("refused: no x-should-retry", "x-should-retry" not in headers, headers)
check("refused: x-ratelimit-limit-requests", headers.get("x-ratelimit-limit-requests") == str(limit), headers)
check("refused: x-ratelimit-remaining-requests", headers.get("x-ratelimit-remaining-requests") == "0", headers)
reset = headers.get("x-ratelimit-reset-requests", "")
check("refused: x-ratelimit-reset-requests", RESET.match(reset) is not None, reset)

print("all rate-limit checks passed", file=sys.stderr)
