"""The README's "Managing keys from the command line" section, run as written against moto.

Every bash block of the section is taken from the README, not retyped, and run in order with
bash: `openai-proxy keys …` (the built binary, first on PATH) on a key map secret in moto, then
the `aws` commands that roll the secret back to AWSPREVIOUS. The section's variables are set as a
reader would set them: OPENAI_API_KEY and NEW_OPENAI_API_KEY hold (test) real keys.

Run by the Rust test `the_readme_key_commands_work_against_moto` with the repository root as the
working directory, the binary's directory and .venv/bin first on PATH, AWS_ENDPOINT_URL at moto.
"""

import json
import os
import re
import subprocess
import sys

REAL_KEY = "sk-readme-real-key-1"
NEW_REAL_KEY = "sk-readme-real-key-2"


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


readme = open("README.md", encoding="utf-8").read()
start = readme.index("### Managing keys from the command line")
section = readme[start : readme.find("\n## ", start + 1)]
blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
check("the section has its four command blocks", len(blocks) == 4, len(blocks))

env = dict(os.environ, OPENAI_API_KEY=REAL_KEY, NEW_OPENAI_API_KEY=NEW_REAL_KEY)


def bash(script):
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    check(f"runs: {script.strip().splitlines()[-1][:80]}", result.returncode == 0, result.stdout + result.stderr)
    for secret in (REAL_KEY, NEW_REAL_KEY):
        check("no real key in the output", secret not in result.stdout + result.stderr, script)
    return result.stdout


def current():
    out = subprocess.run(
        ["aws", "secretsmanager", "get-secret-value", "--secret-id", "openai-proxy/keys", "--query", "SecretString", "--output", "text"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return json.loads(out)


def entries(document, id_):
    return [entry for entry in document["keys"].values() if isinstance(entry, dict) and entry.get("id") == id_]


subprocess.run(
    ["aws", "secretsmanager", "create-secret", "--name", "openai-proxy/keys", "--secret-string", "file://keys.example.json"],
    env=env, capture_output=True, text=True, timeout=60, check=True,
)

create, rotate, set_real_key, rollback = blocks
out = bash(create)
created = [line for line in out.splitlines() if line.startswith("sk-proxy-")]
check("create printed one wrapper key", len(created) == 1, out)
check("list shows the new id, and never the new key", "data-team-ci" in out and out.count(created[0]) == 1, out)
document = current()
check("the secret became a version-2 document", document.get("version") == 2, document)
[entry] = entries(document, "data-team-ci")
check("with the key's policy and limits", entry["limits"] == {"requests_per_minute": 60, "tokens_per_day": 2000000} and entry["api_key"] == REAL_KEY, entry)

# The first block exported the secret's id; the others run in their own shells.
env["KEY_MAP_SECRET_ID"] = "openai-proxy/keys"
out = bash(rotate)
check("rotate printed a new wrapper key", out.startswith("sk-proxy-") and created[0] not in out, out)
check("both keys of the id are in the map, the old one expiring", len(entries(current(), "data-team-ci")) == 2)

bash(set_real_key)
check("set-real-key set the new real key", all(e["api_key"] == NEW_REAL_KEY for e in entries(current(), "data-team-ci")))

bash(rollback)
check("the roll-back made the version before it current again", all(e["api_key"] == REAL_KEY for e in entries(current(), "data-team-ci")))
print("README key commands passed", file=sys.stderr)
