"""A spent day budget as an SDK user meets it: the official Python SDK, with its default retries,
through openai-proxy with a key whose `tokens_per_day` fits two chat completions and not a third.
Run by the Rust test in tests/it/limits_sdk.rs, which passes:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  OPENAI_PROXY_KEY       a wrapper key limited to BUDGET_TOKENS tokens per day, and nothing else
  BUDGET_TOKENS          that budget
  MAX_TOKENS             the max_tokens each call sends
  USAGE_TOKENS           the total_tokens the fake upstream reports for each completion
  EXPECTED_REPLY         the text the fake upstream answers with

A request reserves ceil(its JSON body's bytes / 4) + max_tokens; a complete one is then charged
its usage instead. An httpx hook sees every HTTP attempt the SDK makes, so the script knows each
body's size (hence the reservation) and how many attempts a call took.

Every check raises on failure; the script prints one line per passing check.
"""

import math
import os
import re
import sys
import time

import openai
from openai import OpenAI

base_url = os.environ["OPENAI_PROXY_BASE_URL"]
budget = int(os.environ["BUDGET_TOKENS"])
max_tokens = int(os.environ["MAX_TOKENS"])
usage_tokens = int(os.environ["USAGE_TOKENS"])
expected = os.environ["EXPECTED_REPLY"]
messages = [{"role": "user", "content": "Spend some of my budget."}]
# OpenAI's reset format (Go durations): 250ms, 12s, 6m0s, 10h41m21s.
RESET = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+s)$")

attempts = []
# The SDK's own client defaults, plus a hook that sees each attempt's body.
http_client = openai.DefaultHttpxClient(event_hooks={"request": [lambda request: attempts.append(request.content)]})
client = OpenAI(base_url=base_url, api_key=os.environ["OPENAI_PROXY_KEY"], timeout=20, http_client=http_client)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}", flush=True)


def reserved(body):
    return math.ceil(len(body) / 4) + max_tokens


def chat(api):
    return api.create(model="gpt-4o-mini", messages=messages, max_tokens=max_tokens)


check("the client retries by default", client.max_retries == 2, client.max_retries)

# Every call must fall in one UTC day (one budget window): near midnight, wait for the next day.
left = 86_400 - time.time() % 86_400
if left < 30:
    time.sleep(left + 1)

# Two completions fit the budget; each reply says how much of it is left.
spent, remaining = 0, []
for call in (1, 2):
    before = len(attempts)
    raw = chat(client.chat.completions.with_raw_response)
    completion = raw.parse()
    check(f"call {call}: one attempt", len(attempts) == before + 1, len(attempts) - before)
    check(f"call {call}: the reply", completion.choices[0].message.content == expected, completion)
    reservation = reserved(attempts[-1])
    headers = raw.headers
    check(f"call {call}: x-ratelimit-limit-tokens", headers.get("x-ratelimit-limit-tokens") == str(budget), headers)
    left_after = headers.get("x-ratelimit-remaining-tokens")
    # At admission the window holds the earlier calls' usage and this call's reservation.
    check(
        f"call {call}: x-ratelimit-remaining-tokens is the budget less usage and this reservation",
        left_after == str(budget - spent - reservation),
        (left_after, budget, spent, reservation),
    )
    reset = headers.get("x-ratelimit-reset-tokens", "")
    check(f"call {call}: x-ratelimit-reset-tokens", RESET.match(reset) is not None, reset)
    # The key has no request limit: no request trio, not even the upstream's own.
    check(
        f"call {call}: no x-ratelimit-*-requests",
        not any(name.endswith("-requests") for name in headers if name.startswith("x-ratelimit-")),
        headers,
    )
    check(f"call {call}: usage", completion.usage.total_tokens == usage_tokens, completion.usage)
    remaining.append(int(left_after))
    spent += completion.usage.total_tokens

check("remaining tokens decrease by the first call's usage", remaining[0] - remaining[1] == usage_tokens, remaining)
# The test's budget is sized for this body: the third call's reservation no longer fits.
third = reserved(attempts[-1])
check(
    "the budget fits two calls and not a third",
    spent + third > budget >= spent - usage_tokens + third,
    (budget, spent, third),
)

# The third: 429 insufficient_quota with x-should-retry: false, so the SDK does not retry.
before = len(attempts)
try:
    chat(client.chat.completions)
except openai.RateLimitError as err:
    check("budget spent: RateLimitError", err.status_code == 429, err)
    check("budget spent: exactly one HTTP attempt", len(attempts) == before + 1, len(attempts) - before)
    check("budget spent: code insufficient_quota", err.code == "insufficient_quota", err.body)
    body = err.body if isinstance(err.body, dict) else {}
    check("budget spent: body code", body.get("code") == "insufficient_quota", err.body)
    check("budget spent: type insufficient_quota", err.type == "insufficient_quota", err.body)
    message = body.get("message", "")
    check("budget spent: the message names the day budget", "per day" in message and "this API key" in message, message)
    check("budget spent: the message names no key", os.environ["OPENAI_PROXY_KEY"] not in message, message)
    headers = err.response.headers
    check("budget spent: x-should-retry false", headers.get("x-should-retry") == "false", headers)
    check("budget spent: no retry-after", "retry-after" not in headers, headers)
    check(
        "budget spent: x-ratelimit-remaining-tokens",
        headers.get("x-ratelimit-remaining-tokens") == str(budget - spent),
        headers,
    )
    check("budget spent: x-ratelimit-limit-tokens", headers.get("x-ratelimit-limit-tokens") == str(budget), headers)
else:
    raise AssertionError("the third call was admitted past the budget")

# Again: the proxy now refuses from memory, without its store, and says the same.
before = len(attempts)
try:
    chat(client.chat.completions)
except openai.RateLimitError as err:
    check("budget still spent: one attempt", len(attempts) == before + 1, len(attempts) - before)
    check("budget still spent: code insufficient_quota", err.code == "insufficient_quota", err.body)
    headers = err.response.headers
    check("budget still spent: x-should-retry false", headers.get("x-should-retry") == "false", headers)
    check(
        "budget still spent: x-ratelimit-remaining-tokens",
        headers.get("x-ratelimit-remaining-tokens") == str(budget - spent),
        headers,
    )
else:
    raise AssertionError("the fourth call was admitted past the budget")

print("all budget checks passed", file=sys.stderr)
