"""`sam build` as a user runs it, offline, for the variant this machine can build.

arm64 needs the aarch64 standard library, which this toolchain does not have, so the build runs
for x86_64 (`--parameter-overrides Architecture=x86_64`, as samconfig.toml's global section would
give it) and the check reads the built `bootstrap`'s ELF header. For arm64 it asks SAM's own Rust
builder which command it would run. SAM CLI phones nothing home here: telemetry is off and its
daily version check is marked done in a private settings directory.

Run by the Rust test `sam_build_builds_the_architecture_it_is_given`, repository root as the
working directory, with .venv/bin (cargo-lambda, zig) first on PATH.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from aws_lambda_builders.architecture import ARM64, X86_64
from aws_lambda_builders.workflow import BuildMode
from aws_lambda_builders.workflows.rust_cargo.actions import RustCargoLambdaBuildAction


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


def builder_command(architecture):
    cargo = type("Cargo", (), {"binary_path": "cargo"})()
    action = RustCargoLambdaBuildAction(
        ".", {"cargo": cargo}, BuildMode.RELEASE, subprocess_cargo_lambda=None,
        runtime="provided.al2023", architecture=architecture, handler="openai-proxy",
    )
    return action.build_command()


arm64 = builder_command(ARM64)
check("an arm64 build passes --arm64 to cargo lambda", "--arm64" in arm64, arm64)
x86 = builder_command(X86_64)
check("an x86_64 build names no other architecture", "--arm64" not in x86, x86)

with tempfile.TemporaryDirectory() as scratch:
    app_dir = os.path.join(scratch, "sam-app")
    os.makedirs(app_dir)
    with open(os.path.join(app_dir, "metadata.json"), "w") as settings:
        json.dump({"telemetryEnabled": False, "lastVersionCheck": time.time()}, settings)
    # A target directory of its own: `cargo test`, which runs this, holds the lock on the main one.
    target_dir = os.path.join(os.getcwd(), "target", "sam-build")
    env = dict(os.environ, SAM_CLI_TELEMETRY="0", __SAM_CLI_APP_DIR=app_dir, CARGO_TARGET_DIR=target_dir)
    build_dir = os.path.join(scratch, "build")
    sam = os.path.join(os.path.dirname(sys.executable), "sam")
    result = subprocess.run(
        [sam, "build", "--parameter-overrides", "Architecture=x86_64", "--build-dir", build_dir,
         "--cache-dir", os.path.join(scratch, "cache")],
        env=env, capture_output=True, text=True, timeout=3000,
    )
    check("sam build succeeds", result.returncode == 0, result.stdout + result.stderr)
    bootstrap = os.path.join(build_dir, "ProxyFunction", "bootstrap")
    with open(bootstrap, "rb") as binary:
        header = binary.read(20)
    # ELF magic, 64-bit, little-endian; e_machine (bytes 18-19) 0x3e is x86-64, 0xb7 AArch64.
    check("bootstrap is a 64-bit ELF", header[:5] == b"\x7fELF\x02", header)
    machine = int.from_bytes(header[18:20], "little")
    check("bootstrap is built for x86-64", machine == 0x3E, hex(machine))
    check("bootstrap is executable", os.access(bootstrap, os.X_OK))
print("sam build checks passed", file=sys.stderr)
