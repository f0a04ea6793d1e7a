"""The official OpenAI Python SDK through openai-proxy, across the API beyond chat: legacy
completions, moderations, images, audio (binary speech, multipart transcriptions), files (binary
round trip), batches, and the Responses API's retrieve / cancel / delete / input items / resumed
stream. Run by the Rust tests with the same environment as sdk_python.py:

  OPENAI_PROXY_BASE_URL  the proxy's base_url, ending in /v1
  OPENAI_PROXY_KEY       a wrapper key the proxy knows
  EXPECTED_REPLY         the text the fake upstream answers with
  HELD_MODEL_PREFIX      (set by the test harness; this script uses only its `-held-` infix, in the
                         speech model `gpt-4o-mini-tts-held-<token>`)
  OPENAI_PROXY_TEST_UPSTREAM  the fake upstream's own base_url, where a held stream is released

The fake upstream (tests/it/support/openai_api.rs and its siblings) answers speech with 64 KiB whose
byte i is (i ^ (i >> 8)) & 0xff, in 8 KiB writes; it checks each upload's multipart encoding and the
transcription clip (the bytes 0..=255) and refuses a wrong one with `fake upstream: <check>`.

Every check raises on failure; the script prints one line per passing check.
"""

import base64
import json
import os
import sys
import urllib.request
import uuid

import openai
from openai import OpenAI

base_url = os.environ["OPENAI_PROXY_BASE_URL"]
expected = os.environ["EXPECTED_REPLY"]
upstream = os.environ["OPENAI_PROXY_TEST_UPSTREAM"]
HELD_INFIX = "-held-"
assert os.environ["HELD_MODEL_PREFIX"].endswith(HELD_INFIX), os.environ["HELD_MODEL_PREFIX"]

# max_retries=0: a failure must show as a failure, not as a retried success.
client = OpenAI(base_url=base_url, api_key=os.environ["OPENAI_PROXY_KEY"], max_retries=0, timeout=20)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}", flush=True)


def release(token):
    """Releases the fake's held body `token`; whether it was still held."""
    with urllib.request.urlopen(f"{upstream}/test-release/{token}", timeout=20) as released:
        return json.load(released)["held"]


# Legacy completions, plain and streamed (with the usage chunk).
completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
check("completions.create", completion.choices[0].text == expected, completion)
check("completions.create usage", completion.usage.total_tokens == 12, completion.usage)
pieces, usage = [], None
for chunk in client.completions.create(
    model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True, stream_options={"include_usage": True}
):
    if chunk.choices:
        pieces.append(chunk.choices[0].text)
    if chunk.usage:
        usage = chunk.usage
check("completions.create(stream=True) text", "".join(pieces) == expected, pieces)
check("completions.create(stream=True) usage", usage is not None and usage.total_tokens == 12, usage)

# Moderations and images.
moderation = client.moderations.create(model="omni-moderation-latest", input=["hello", "world"])
check("moderations.create", len(moderation.results) == 2 and not moderation.results[0].flagged, moderation)
image = client.images.generate(model="gpt-image-1", prompt="a fake upstream")
png = base64.b64decode(image.data[0].b64_json)
check("images.generate b64_json", png.startswith(b"\x89PNG\r\n\x1a\n"), png)
check("images.generate usage", image.usage is not None and image.usage.total_tokens == 4210, image.usage)
image = client.images.generate(model="dall-e-3", prompt="a fake upstream", response_format="url")
check("images.generate url", image.data[0].url.startswith("https://"), image)

# Speech: a binary body, streamed. The fake sends its first 8 KiB write, then holds the rest until
# this client, holding those bytes, releases it.
audio = bytes((i ^ (i >> 8)) & 0xFF for i in range(64 * 1024))
token = uuid.uuid4().hex
received, held, first = bytearray(), None, 0
with client.audio.speech.with_streaming_response.create(
    model=f"gpt-4o-mini-tts{HELD_INFIX}{token}", voice="alloy", input="Hello"
) as speech:
    check("audio.speech content-type", speech.headers["content-type"] == "audio/mpeg", speech.headers)
    for chunk in speech.iter_bytes():
        received += chunk
        if held is None:
            first = len(received)
            held = release(token)
check("audio.speech streams its first bytes before the rest is sent", held is True and first < len(audio), (held, first))
check("audio.speech bytes identical", bytes(received) == audio, len(received))

# Transcriptions: multipart/form-data, with a clip of every byte value.
clip = bytes(range(256))
transcription = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("clip.mp3", clip, "audio/mpeg"))
check("audio.transcriptions.create", transcription.text == expected, transcription)
check(
    "audio.transcriptions.create usage",
    transcription.usage is not None and transcription.usage.type == "tokens" and transcription.usage.total_tokens == 20,
    transcription.usage,
)
text = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("clip.mp3", clip), response_format="text")
check("audio.transcriptions.create text format", isinstance(text, str) and text.strip() == expected, text)
try:
    client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("clip.mp3", clip[::-1]))
except openai.BadRequestError as err:
    message = err.body["message"] if isinstance(err.body, dict) else str(err.body)
    check("the fake refuses a clip other than 0..=255", message.startswith("fake upstream: the file part"), message)
else:
    raise AssertionError("the fake accepted a reversed clip")

# Files: a binary round trip, every byte value, in more than one network write each way.
payload = os.urandom(300 * 1024) + bytes(range(256))
uploaded = client.files.create(file=("payload.bin", payload), purpose="user_data")
check("files.create", uploaded.id.startswith("file-") and uploaded.bytes == len(payload), uploaded)
content = client.files.content(uploaded.id)
check("files.content bytes identical", content.content == payload, len(content.content))

# Batches.
batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
check("batches.create", batch.input_file_id == uploaded.id and batch.status == "validating", batch)
again = client.batches.retrieve(batch.id)
check("batches.retrieve", again.id == batch.id and again.status == "in_progress", again)
cancelled = client.batches.cancel(batch.id)
check("batches.cancel", cancelled.id == batch.id and cancelled.status == "cancelling", cancelled)

# The Responses API beyond create.
response = client.responses.retrieve("resp_stored1")
check("responses.retrieve", response.id == "resp_stored1" and response.output_text == expected, response)
cancelled = client.responses.cancel("resp_stored1")
check("responses.cancel", cancelled.status == "cancelled", cancelled)
check("responses.delete", client.responses.delete("resp_stored1") is None)
page = client.responses.input_items.list("resp_stored1", limit=2, order="asc")
check("responses.input_items.list limit", [i.id for i in page.data] == ["msg_in_0", "msg_in_1"] and page.has_more, page)
page = client.responses.input_items.list("resp_stored1", limit=2, order="asc", after="msg_in_1")
check("responses.input_items.list after", [i.id for i in page.data] == ["msg_in_2", "msg_in_3"], page)
every = [item.id for item in client.responses.input_items.list("resp_stored1", limit=2)]
check("responses.input_items.list pages on", every == [f"msg_in_{n}" for n in range(4, -1, -1)], every)

# Resuming a response's stream: only the events after `starting_after`.
events = list(client.responses.retrieve("resp_stored1", stream=True, starting_after=3))
check("responses.retrieve(stream=True, starting_after=3) starts at 4", events[0].sequence_number == 4, events[0])
deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check("the resumed stream's text", deltas and expected.endswith(deltas) and deltas != expected, deltas)
check("the resumed stream completes", events[-1].type == "response.completed", events[-1])

print("all whole-API SDK checks passed", file=sys.stderr)
