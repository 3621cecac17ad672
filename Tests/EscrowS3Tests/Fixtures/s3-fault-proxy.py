#!/usr/bin/env python3
"""A tiny fault-injecting HTTP proxy in front of the local S3 server (moto), for S3EscrowStore's
retry tests. Loopback only. Forwards every request unchanged (the signed Host header included)
to --upstream, except:
  --slowdown N   the first N requests get 503 SlowDown (S3's throttling reply), not forwarded;
  --reset N      the next N requests after those have their connection closed without a reply;
  --lose-reply N the next N after those are forwarded, then their connection is closed without
                 the reply (the store did the work; the client never hears of it);
  --down-after-lose  once the lost replies are used up, every later request has its connection
                 closed too (the store went away right after doing the work: a crash window that
                 stays open until the test acts).
  --strip-if-none-match  forwards PUTs without their If-None-Match header: a server that does
                 not honour conditional writes (moto does not check signatures).
  --forbid-probe  answers every request for the conditional-put probe with 403 AccessDenied (a
                 bucket policy that denies that one name).
Requests for the conditional-put probe (.keyline-conditional-put-probe) are never faulted, so
the counts above apply to the requests a test makes.
Prints "listening PORT" once it accepts, and one line per injected fault.
"""
import argparse
import http.client
import http.server
import signal
import sys
import threading

# A parent may have left SIGTERM ignored or blocked (both are inherited across exec): the tests
# stop the proxy with SIGTERM to stand for a server going away, so take the default action back.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--upstream", required=True)  # host:port
parser.add_argument("--slowdown", type=int, default=0)
parser.add_argument("--reset", type=int, default=0)
parser.add_argument("--lose-reply", type=int, default=0)
parser.add_argument("--down-after-lose", action="store_true")
parser.add_argument("--strip-if-none-match", action="store_true")
parser.add_argument("--forbid-probe", action="store_true")
args = parser.parse_args()
host, port = args.upstream.rsplit(":", 1)
lock = threading.Lock()
budget = {"slowdown": args.slowdown, "reset": args.reset, "lose": args.lose_reply}
down = {"now": False}

DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
          b'<Message>Access Denied</Message><RequestId>fault-proxy</RequestId></Error>')
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>')


def take(kind):
    with lock:
        if budget[kind] > 0:
            budget[kind] -= 1
            return True
    return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        if args.strip_if_none_match:
            headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
        if ".keyline-conditional-put-probe" in self.path:
            if args.forbid_probe:
                print("fault forbid-probe", self.command, self.path, flush=True)
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(DENIED)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(DENIED)
                return
            self.forward(body, headers)
            return
        if take("slowdown"):
            print("fault slowdown", self.command, self.path, flush=True)
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(SLOWDOWN)
            return
        with lock:
            is_down = down["now"]
        if take("reset") or is_down:
            print("fault reset", self.command, self.path, flush=True)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.forward(body, headers, faults=True)

    def forward(self, body, headers, faults=False):
        upstream = http.client.HTTPConnection(host, int(port), timeout=30)
        upstream.request(self.command, self.path, body=body, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        if faults and take("lose"):
            with lock:
                if args.down_after_lose and budget["lose"] == 0:
                    down["now"] = True
            print("fault lose-reply", self.command, self.path, reply.status, flush=True)
            self.close_connection = True
            self.connection.shutdown(2)
            upstream.close()
            return
        self.send_response(reply.status, reply.reason)
        for name, value in reply.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else reply.getheader("Content-Length") or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = handle_any


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", args.port), Handler)
print("listening", server.server_address[1], flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
sys.exit(0)
