"""Proves that tests/e2e/fake_sigv4_upstream.py is not a rubber stamp: it starts the fake (twice:
once without and once with a session token), signs requests with botocore's own SigV4 signer, and
checks that correct ones are answered and that each kind of wrong one is refused with a 403 whose
message names the right check. Run by tests/it/sigv4_fake.rs with the test virtualenv's Python;
takes no environment. Prints `ok - <check>` for each passing check, `not ok - <check>: <detail>`
for each failing one, and exits non-zero if any failed.
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import queue
import struct
import subprocess
import sys
import threading
from unittest import mock
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_sigv4_upstream.py")
KEY, SECRET = "AKIDEXAMPLESELFTEST0", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSELFTESTKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//session+token="
REGION, SERVICE = "us-west-2", "bedrock"
CHAT = "/openai/v1/chat/completions"
REPLY = "Hello from the fake upstream"
FAILED = []


def check(name, condition, detail=""):
    if condition:
        print(f"ok - {name}", flush=True)
    else:
        FAILED.append(name)
        print(f"not ok - {name}: {detail}", flush=True)


def start(token=None):
    env = {"SIGV4_ACCESS_KEY_ID": KEY, "SIGV4_SECRET_ACCESS_KEY": SECRET,
           "SIGV4_REGION": REGION, "SIGV4_SERVICE": SERVICE}
    if token:
        env["SIGV4_SESSION_TOKEN"] = token
    process = subprocess.Popen([sys.executable, FAKE], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    line = lines.get(timeout=30)
    assert line.startswith("listening on http://127.0.0.1:"), repr(line)
    return process, line.split("listening on ")[1].strip()


def sign(base, body=b'{"model":"m","messages":[{"role":"user","content":"Hi"}]}', path=CHAT,
         method="POST", region=REGION, service=SERVICE, secret=SECRET, token=None, when=None,
         content_sha=True):
    """(method, path, body, headers) signed by botocore for `base` + `path`."""
    headers = {"host": urlsplit(base).netloc, "content-type": "application/json"}
    if content_sha:
        headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    request = AWSRequest(method=method, url=base + path, data=body, headers=headers)
    signer = SigV4Auth(Credentials(KEY, secret, token), service, region)
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=when or datetime.datetime.now(datetime.timezone.utc)):
        signer.add_auth(request)
    return method, path, body, dict(request.headers.items())


def send(base, method, path, body, headers):
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    answer = (response.status, response.getheader("content-type"), response.read())
    connection.close()
    return answer


def refused(name, base, request, reason):
    status, _, body = send(base, *request)
    try:
        error = json.loads(body)["error"]
        shaped = error["code"] == "signature_mismatch" and error["type"] == "invalid_request_error"
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        shaped, message = False, body[:200]
    check(name, status == 403 and shaped and reason in message,
          f"status {status}, expected 403 naming {reason!r}: {message}")


def with_headers(request, **changes):
    """The request with these headers set (replacing any of the same name, in any case)."""
    method, path, body, headers = request
    lower = {name.lower() for name in changes}
    kept = {name: value for name, value in headers.items() if name.lower() not in lower}
    return method, path, body, {**kept, **changes}


def main():
    plain, base = start()
    tokened, token_base = start(TOKEN)
    try:
        status, kind, body = send(base, *sign(base))
        answer = json.loads(body) if status == 200 else {}
        content = answer.get("choices", [{}])[0].get("message", {}).get("content")
        check("a correctly signed chat completion is answered", status == 200 and content == REPLY
              and answer.get("model") == "m" and answer.get("usage", {}).get("total_tokens") == 14,
              f"{status} {body[:300]!r}")

        streamed = json.dumps({"model": "m", "stream": True, "messages": [],
                               "stream_options": {"include_usage": True}}).encode()
        status, kind, body = send(base, *sign(base, streamed))
        events = [e[len("data: "):] for e in body.decode().split("\n\n") if e]
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        check("a correctly signed streaming chat is answered as SSE",
              status == 200 and kind == "text/event-stream" and events[-1] == "[DONE]"
              and text == REPLY and chunks[-1].get("usage", {}).get("total_tokens") == 14,
              f"{status} {kind} {body[:300]!r}")

        embed = json.dumps({"model": "e", "input": ["a", "b"], "encoding_format": "base64"}).encode()
        status, _, body = send(base, *sign(base, embed, path="/openai/v1/embeddings"))
        data = json.loads(body).get("data", []) if status == 200 else []
        vectors = [list(struct.unpack("<4f", base64.b64decode(d["embedding"]))) for d in data]
        check("correctly signed base64 embeddings are answered",
              vectors == [[0.5, -1.0, 0.25, 2.0], [1.5, -1.0, 0.25, 2.0]], f"{status} {body[:300]!r}")

        status, _, body = send(base, *sign(base, b"", path="/openai/v1/models", method="GET"))
        check("a correctly signed GET of the models is answered",
              status == 200 and json.loads(body)["object"] == "list", f"{status} {body[:300]!r}")

        method, path, body, headers = sign(base)
        tampered = body.replace(b'"Hi"', b'"Hj"')
        refused("a body changed after signing is refused", base,
                (method, path, tampered, headers), "x-amz-content-sha256")
        refused("a body changed after signing, its hash header updated, is refused", base,
                with_headers((method, path, tampered, headers), **{
                    "X-Amz-Content-SHA256": hashlib.sha256(tampered).hexdigest()}),
                "signature mismatch")
        refused("a request signed for another region is refused", base,
                sign(base, region="us-east-1"), "region")
        refused("a request signed for another service is refused", base,
                sign(base, service="execute-api"), "service")
        refused("a request signed with a wrong secret key is refused", base,
                sign(base, secret=SECRET + "x"), "signature mismatch")
        refused("a request sent to another path than it was signed for is refused", base,
                (method, "/openai/v1/embeddings", body, headers), "signature mismatch")
        refused("a signed header changed after signing is refused", base,
                with_headers(sign(base), **{"Content-Type": "text/plain"}), "signature mismatch")
        hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        refused("an hour-old signature is refused", base, sign(base, when=hour_ago), "15 minutes")
        refused("an unsigned x-amz-content-sha256 is refused", base,
                with_headers(sign(base, content_sha=False),
                             **{"x-amz-content-sha256": hashlib.sha256(body).hexdigest()}),
                "x-amz-content-sha256 is not signed")
        refused("a request without a signature is refused", base,
                ("POST", CHAT, body, {"host": headers["host"], "content-type": "application/json"}),
                "no (single) authorization")
        refused("a Bearer key is refused", base,
                with_headers(sign(base), Authorization="Bearer sk-real-openai-key"), "Bearer")
        refused("a signed request that also carries api-key is refused", base,
                with_headers(sign(base), **{"api-key": "azure-key"}), "api-key")
        refused("a session token sent for credentials without one is refused", base,
                sign(base, token=TOKEN), "x-amz-security-token")

        status, _, body = send(token_base, *sign(token_base, token=TOKEN))
        check("a request signed with the session token is answered", status == 200,
              f"{status} {body[:300]!r}")
        refused("a request without the session token is refused", token_base,
                sign(token_base), "x-amz-security-token is not signed")
        refused("a request with another session token is refused", token_base,
                sign(token_base, token=TOKEN + "x"), "not the session token")
        refused("a session token added after signing is refused", token_base,
                with_headers(sign(token_base), **{"X-Amz-Security-Token": TOKEN}),
                "x-amz-security-token is not signed")

        status, _, body = send(base, "GET", "/_test/received", b"", {})
        seen = json.loads(body)
        verdicts = [r["verified"] for r in seen]
        check("the fake records every request with its verdict",
              verdicts == [True] * 4 + [False] * 13
              and all(r["failure"] for r in seen[4:]) and seen[0]["path"] == CHAT
              and seen[0]["headers"]["x-amz-content-sha256"] == hashlib.sha256(
                  base64.b64decode(seen[0]["body_b64"])).hexdigest(),
              f"{verdicts}")
    finally:
        for process in (plain, tokened):
            process.kill()
            process.wait()
    if FAILED:
        print(f"{len(FAILED)} check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
