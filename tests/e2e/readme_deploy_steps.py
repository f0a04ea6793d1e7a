"""The README's deploy steps that have an offline twin, run as written against moto.

The `aws` commands are taken from the README's bash blocks, not retyped here, and run with the AWS
CLI at the moto endpoint in AWS_ENDPOINT_URL:
1. "With cargo lambda", step 1: create the key map secret and the role that may read it (IAM).
2. "With AWS SAM": the command that prints an existing secret's full ARN; the template's
   ExistingKeyMapSecretArn pattern accepts that ARN and refuses it without its suffix.
3. "Tearing down": the secret's deletion (with a recovery window) and the role's removal.
The steps that need AWS itself (sam deploy, cargo lambda deploy, the function URL, the checklist)
are checked on paper only.

Run by the Rust test `the_readme_secret_steps_work_against_moto` with the repository root as the
working directory and .venv/bin first on PATH.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from cfnlint.decode import decode_str


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


readme = open("README.md", encoding="utf-8").read()


def section(title):
    start = readme.index(f"### {title}")
    end = readme.find("\n### ", start + 1)
    return readme[start:end]


def balanced(command):
    """Whether every quote in `command` is closed (a command may go on over lines inside one)."""
    unescaped = re.sub(r"\\.", "", command)
    return unescaped.count('"') % 2 == 0 and unescaped.count("'") % 2 == 0


def aws_commands(text):
    """Every `aws …` command in the bash blocks of `text`, as bash would read it."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        command = ""
        for line in joined.splitlines():
            command = f"{command}\n{line}" if command else line
            if not balanced(command):
                continue
            command = command.split("  #")[0].strip()
            if command.startswith("aws "):
                commands.append(command)
            command = ""
    return commands


def run(command, workdir):
    result = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=120)
    check(f"runs: {command[:90]}", result.returncode == 0, result.stdout + result.stderr)
    return result.stdout.strip()


workdir = tempfile.mkdtemp()
try:
    shutil.copy("keys.example.json", os.path.join(workdir, "keys.json"))

    cargo_lambda = aws_commands(section("With cargo lambda"))
    step_one = [c for c in cargo_lambda if c.startswith(("aws secretsmanager", "aws iam"))]
    check("the cargo lambda steps create the secret and the role", len(step_one) == 4, step_one)
    for command in step_one:
        run(command, workdir)

    sam = aws_commands(section("With AWS SAM"))
    [print_arn] = [c for c in sam if "describe-secret" in c and "--query ARN" in c]
    arn = run(print_arn, workdir)
    check("the printed ARN is the secret's full ARN", re.fullmatch(r"arn:aws:secretsmanager:.+:secret:openai-proxy/keys-\w{6}", arn), arn)

    template, _ = decode_str(open("template.yaml", encoding="utf-8").read())
    pattern = re.compile(template["Parameters"]["ExistingKeyMapSecretArn"]["AllowedPattern"])
    check("the template accepts the printed ARN", pattern.fullmatch(arn), arn)
    check("the template refuses it without its suffix", not pattern.fullmatch(arn[:-7]), arn[:-7])

    # The secret's deletion is given for both ways of deploying; run once.
    teardown = list(dict.fromkeys(c for c in aws_commands(section("Tearing down")) if c.startswith(("aws secretsmanager", "aws iam"))))
    check("the teardown deletes the secret and the role", len(teardown) == 4, teardown)
    for command in teardown:
        run(command, workdir)
    deleted = run("aws secretsmanager describe-secret --secret-id openai-proxy/keys --query DeletedDate --output text", workdir)
    check("the secret is scheduled for deletion, still restorable", deleted not in ("", "None"), deleted)
finally:
    shutil.rmtree(workdir)
print("README deploy steps passed", file=sys.stderr)
