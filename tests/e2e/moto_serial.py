"""moto's server, as `moto_server -H HOST -p PORT` runs it, but handling one request at a time.

moto's server accepts connections on threads (werkzeug's threaded server) and its DynamoDB backend
takes no lock, so two concurrent conditional UpdateItems on one item can both pass their
condition: moto over-admits where DynamoDB, which applies writes to one item one after another,
would not. The limits tests count exactly, so here the whole handling of each request, from
calling the app to reading its last body chunk, holds one global lock. Connections are still
accepted on threads (a slow client holds nothing while its request is being read), only moto's
own work is serialised, which is as fast as the tests need.

    moto_serial.py -H 127.0.0.1 -p PORT

Mirrors moto/server.py's main() (moto 5.2.5, pinned in requirements.txt) without its reload and
SSL options, which the tests never use. Started by the Rust tests' `Moto::start`.

It also corrects one way moto's Secrets Manager differs from AWS (see `follow_awscurrent` below).
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.secretsmanager.models import SecretsManagerBackend
from werkzeug.serving import run_simple


def follow_awscurrent():
    """After UpdateSecretVersionStage moves AWSCURRENT, the secret's default version is the one
    now labelled AWSCURRENT, as on AWS.

    moto 5.2 keeps an internal `default_version_id` that only CreateSecret and PutSecretValue set;
    UpdateSecretVersionStage moves the labels but not it. So after a staged edit (put a version
    under another label, then move AWSCURRENT to it, as `openai-proxy keys` writes), a
    GetSecretValue naming no stage or version still returns the version that was current before,
    where AWS returns the one labelled AWSCURRENT. It also breaks the next plain PutSecretValue:
    moto relabels the stale default version AWSPREVIOUS and leaves AWSCURRENT on the version the
    stage move made current, so two versions hold AWSCURRENT, and an UpdateSecretVersionStage
    whose RemoveFromVersionId is that no-longer-current version is then accepted, where AWS
    refuses it ("If the label is attached and you either do not specify this parameter, or the
    version ID does not match, then the operation fails": AWS's UpdateSecretVersionStage
    reference). With the default following the label, moto's own check (it refuses, with
    InvalidParameterException, a RemoveFromVersionId that does not hold the stage, before changing
    anything) refuses it as AWS does, so that needs no patch of its own.
    """
    original = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
        answer = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT":
            secret = self.secrets[secret_id]
            current = [
                version_id
                for version_id, version in secret.versions.items()
                if "AWSCURRENT" in version["version_stages"]
            ]
            # A replica has no default of its own (it reads its primary's).
            if len(current) == 1 and hasattr(secret, "set_default_version_id"):
                secret.set_default_version_id(current[0])
        return answer

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage


follow_awscurrent()


class Serialised:
    """WSGI middleware: one request inside the wrapped app at a time."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            body = self.app(environ, start_response)
            try:
                # The body iterable may still run backend code as it is read (a generator), so it
                # is read to the end under the lock, not later by the server thread.
                chunks = list(body)
            finally:
                # WSGI: whoever consumes the iterable closes it.
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        return chunks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="which host to bind")
    parser.add_argument(
        "-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)), help="port to listen on"
    )
    args = parser.parse_args()

    # moto builds some answers (queue URLs, for one) from MOTO_PORT, as moto_server sets it.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    # As moto_server: SIGTERM ends the process cleanly instead of with a traceback.
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    run_simple(
        args.host,
        args.port,
        Serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
