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
from werkzeug.serving import run_simple


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
