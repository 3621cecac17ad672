#!/usr/bin/env python3
"""The local S3 server of `make s3-up`: moto's server (moto/server.py) with writes made one at a time.

moto checks a PUT's If-None-Match against the bucket and then stores the object, with no lock
between the two (moto/s3/responses.py, put_object), and serves requests on threads: two
concurrent conditional PUTs of one key can both succeed. S3 makes the check and the write one
atomic step ("Conditional writes", S3 user guide), and keyline's write-once escrow relies on it,
so the tests' server must too. Reads stay concurrent.

usage: s3-server.py -H HOST -p PORT
"""
import argparse
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
    writes = threading.Lock()

    def one_write_at_a_time(environ, start_response):
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            with writes:
                # The whole response is produced under the lock: WSGI bodies may be lazy. The
                # iterable's close() is called here, as PEP 3333 asks of whoever consumes it.
                body = app(environ, start_response)
                try:
                    return list(body)
                finally:
                    getattr(body, "close", lambda: None)()
        return app(environ, start_response)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, one_write_at_a_time, threaded=True)


if __name__ == "__main__":
    main()
