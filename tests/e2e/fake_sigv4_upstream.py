"""A fake OpenAI-compatible upstream that demands AWS SigV4, as Amazon Bedrock's
`https://bedrock-runtime.<region>.amazonaws.com/openai/v1` does, and checks every signature with
botocore. It exists so the proxy's "aws-sigv4" upstream is judged by a verifier that shares no code
with the proxy's signer: the canonical request, string to sign and signing key are botocore's.

Environment: SIGV4_ACCESS_KEY_ID, SIGV4_SECRET_ACCESS_KEY, SIGV4_SESSION_TOKEN (optional),
SIGV4_REGION, SIGV4_SERVICE. Listens on 127.0.0.1, a free port, HTTP/1.1, and prints one line
`listening on http://127.0.0.1:PORT` once ready.

Each request must carry `authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>
/aws4_request, SignedHeaders=..., Signature=...` with the configured key, region and service; its
SignedHeaders (sorted, lower-case) must include host, x-amz-date, x-amz-content-sha256, every other
x-amz-* header sent, and x-amz-security-token when a session token is configured (which the request
must then carry, and otherwise must not). x-amz-date must be within 15 minutes of now and match the
scope's date; x-amz-content-sha256 must be the hex SHA-256 of the body received. No `api-key`
header, no Bearer. A failure is a 403 with an OpenAI-shaped error, code `signature_mismatch`, whose
message names the check. Verified requests get OpenAI-shaped answers: POST .../chat/completions
(plain or SSE), POST .../embeddings (float or base64), GET .../models, under any path prefix.
GET /_test/received (unchecked) lists every other request seen, with its verdict.
"""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY_ID = os.environ["SIGV4_ACCESS_KEY_ID"]
SECRET_ACCESS_KEY = os.environ["SIGV4_SECRET_ACCESS_KEY"]
SESSION_TOKEN = os.environ.get("SIGV4_SESSION_TOKEN") or None
REGION = os.environ["SIGV4_REGION"]
SERVICE = os.environ["SIGV4_SERVICE"]
REPLY = "Hello from the fake upstream"
USAGE = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
MAX_SKEW = datetime.timedelta(minutes=15)
AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})"
)
RECEIVED, LOCK = [], threading.Lock()


class SignedHeadersOnly(SigV4Auth):
    """botocore's SigV4, signing exactly the headers put on the request (the ones the client listed
    in SignedHeaders), as AWS does: botocore's own header blacklist (user-agent, ...) is for what it
    chooses to sign when it is the client, not for what a server must accept."""

    def headers_to_sign(self, request):
        return request.headers


def verify(method, path, pairs, body):
    """None when the request is correctly signed, else the check that failed."""
    headers = {}
    for name, value in pairs:
        headers.setdefault(name, []).append(value)
    one = lambda name: headers[name][0] if len(headers.get(name, [])) == 1 else None  # noqa: E731
    if "api-key" in headers:
        return "an api-key header was sent"
    auth = one("authorization")
    if auth is None:
        return "no (single) authorization header"
    if auth.lower().startswith("bearer"):
        return "a Bearer authorization was sent"
    match = AUTH.fullmatch(auth)
    if not match:
        return "authorization is not AWS4-HMAC-SHA256 with Credential, SignedHeaders, Signature"
    key_id, scope_date, region, service, signed_list, signature = match.groups()
    scope = (("access key id", key_id, ACCESS_KEY_ID), ("region", region, REGION),
             ("service", service, SERVICE))
    for what, got, want in scope:
        if got != want:
            return f"credential scope {what} is {got!r}, expected {want!r}"
    amz_date = one("x-amz-date") or ""
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return f"x-amz-date {amz_date!r} is not one YYYYMMDDTHHMMSSZ value"
    if scope_date != amz_date[:8]:
        return f"credential scope date {scope_date} is not x-amz-date's day {amz_date[:8]}"
    if abs(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - when) > MAX_SKEW:
        return f"x-amz-date {amz_date} is more than 15 minutes from now"
    signed = signed_list.split(";")
    if signed != sorted(set(signed)) or signed_list != signed_list.lower():
        return f"SignedHeaders {signed_list!r} is not sorted, unique and lower-case"
    required = {"host", "x-amz-date", "x-amz-content-sha256"}
    required |= {name for name in headers if name.startswith("x-amz-")}
    if SESSION_TOKEN:
        required.add("x-amz-security-token")
    for name in sorted(required - {"authorization"}):
        if name not in signed:
            return f"header {name} is not signed (SignedHeaders={signed_list})"
    for name in signed:
        if name not in headers:
            return f"signed header {name} was not sent"
    token = one("x-amz-security-token")
    if SESSION_TOKEN and token != SESSION_TOKEN:
        return "x-amz-security-token is not the session token"
    if not SESSION_TOKEN and "x-amz-security-token" in headers:
        return "x-amz-security-token sent, but these credentials have no session token"
    if one("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return f"x-amz-content-sha256 is not the SHA-256 of the {len(body)}-byte body received"
    # botocore recomputes the signature: the request as received, its signed headers only, and the
    # request's own x-amz-date as the signing timestamp (add_auth would take the clock's instead).
    request = AWSRequest(method=method, url=f"http://{one('host')}{path}", data=body)
    for name, value in pairs:
        if name in signed:
            request.headers[name] = value
    request.context["timestamp"] = amz_date
    credentials = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    signer = SignedHeadersOnly(credentials, SERVICE, REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        return f"signature mismatch; botocore's canonical request was:\n{canonical}"
    return None


def error(message, code, kind="invalid_request_error"):
    message = f"fake sigv4 upstream: {message}"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def send_json(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def handle_any(self):
        body = self.read_body()
        if self.command == "GET" and self.path == "/_test/received":
            with LOCK:
                return self.send_json(200, list(RECEIVED))
        pairs = [(name.lower(), value) for name, value in self.headers.items()]
        try:
            failure = verify(self.command, self.path, pairs, body)
        except Exception as err:  # a malformed request must still get an answer
            failure = f"verification raised {err!r}"
        record = {"method": self.command, "path": self.path,
                  "headers": {n: ", ".join(v for m, v in pairs if m == n) for n, _ in pairs},
                  "body_b64": base64.b64encode(body).decode(),
                  "verified": failure is None, "failure": failure}
        with LOCK:
            RECEIVED.append(record)
        if failure is not None:
            print(f"fake sigv4 upstream: {self.command} {self.path}: {failure}",
                  file=sys.stderr, flush=True)
            return self.send_json(403, error(failure, "signature_mismatch"))
        route = urlsplit(self.path).path.rstrip("/")
        try:
            request = json.loads(body) if self.command == "POST" else {}
        except ValueError:
            return self.send_json(400, error("the body is not JSON", "invalid_json"))
        if self.command == "POST" and route.endswith("/chat/completions"):
            return self.chat(request)
        if self.command == "POST" and route.endswith("/embeddings"):
            return self.embeddings(request)
        if self.command == "GET" and route.endswith("/models"):
            models = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
                      for m in ("openai.gpt-oss-20b-1:0", "openai.gpt-oss-120b-1:0")]
            return self.send_json(200, {"object": "list", "data": models})
        return self.send_json(404, error(f"no route for {self.command} {route}", "unknown_url"))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    def chat(self, request):
        base = {"id": "chatcmpl-fake-sigv4", "created": int(time.time()),
                "model": request.get("model"), "system_fingerprint": None}
        if not request.get("stream"):
            message = {"role": "assistant", "content": REPLY, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            return self.send_json(200, {**base, "object": "chat.completion", "choices": [choice],
                                        "usage": USAGE})
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        base["object"] = "chat.completion.chunk"
        words = REPLY.split(" ")
        chunks = []
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            finish = "stop" if i == len(words) - 1 else None
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            chunks.append({**base, "choices": [choice]})
            if include_usage:
                chunks[-1]["usage"] = None
        if include_usage:
            chunks.append({**base, "choices": [], "usage": USAGE})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def embeddings(self, request):
        inputs = request.get("input")
        # One text, or one list of token ids, is one input; otherwise a list of them.
        one_input = isinstance(inputs, str) or (inputs and isinstance(inputs[0], int))
        count = 1 if one_input else len(inputs or [])
        data = []
        for i in range(count):
            vector = [i + 0.5, -1.0, 0.25, 2.0]
            if request.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack("<4f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        self.send_json(200, {"object": "list", "data": data, "model": request.get("model"),
                             "usage": {"prompt_tokens": 9, "total_tokens": 9}})


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
