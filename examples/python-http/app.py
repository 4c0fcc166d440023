#!/usr/bin/env python3
"""A Python stdlib HTTP server that runs under zd-run unchanged.

It knows nothing of zd. It speaks the two standard protocols zd-run offers:
its listening socket is fd 3 from systemd's LISTEN_FDS (checked against
LISTEN_PID), and it reports readiness with READY=1 on NOTIFY_SOCKET. On
SIGTERM it drains without a race: it stops accepting, answers any request
still arriving on an open keep-alive connection with "Connection: close",
and exits once no connection is left or only idle ones are (idle for longer
than IDLE_WAIT), bounded by GRACE seconds.

    zd-run --listen tcp://127.0.0.1:8080 --workers 2 -- python3 app.py
"""

import http.server
import os
import signal
import socket
import sys
import threading
import time

GRACE = float(os.environ.get("APP_GRACE", "25"))
IDLE_WAIT = float(os.environ.get("APP_IDLE_WAIT", "1"))

draining = threading.Event()
lock = threading.Lock()
conns = {}  # id(handler) -> [busy, last_change]


def inherited_socket():
    """Return the listening socket from LISTEN_FDS, or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=3)


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.send(state.encode())


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            conns[id(self)] = [False, time.monotonic()]

    def finish(self):
        super().finish()
        with lock:
            conns.pop(id(self), None)

    def handle_one_request(self):
        with lock:
            conns[id(self)] = [True, time.monotonic()]
        try:
            super().handle_one_request()
        finally:
            with lock:
                if id(self) in conns:
                    conns[id(self)] = [False, time.monotonic()]

    def do_GET(self):
        body = "pid=%d generation=%s slot=%s lang=python\n" % (
            os.getpid(), os.environ.get("ZD_GENERATION", ""), os.environ.get("ZD_SLOT", ""))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def main():
    sock = inherited_socket()
    if sock is not None:
        server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
    else:
        port = int(os.environ.get("PORT", "8080"))
        server = Server(("127.0.0.1", port), Handler)

    def on_term(signum, frame):
        draining.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    notify("READY=1\nSTATUS=python serving")
    server.serve_forever(poll_interval=0.1)
    # serve_forever returned: no new connections are accepted by us (the
    # socket stays open in the other workers). Drain what is open.
    notify("STOPPING=1")
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        now = time.monotonic()
        with lock:
            live = [c for c in conns.values() if c[0] or now - c[1] < IDLE_WAIT]
        if not live:
            break
        time.sleep(0.05)
    sys.exit(0)


if __name__ == "__main__":
    main()
