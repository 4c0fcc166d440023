#!/usr/bin/env python3
"""A Python stdlib HTTP server that runs under zd-run unchanged.

It knows nothing of zd. It speaks the two standard protocols zd-run offers:
its listening socket is fd 3 from systemd's LISTEN_FDS (checked against
LISTEN_PID), and it reports readiness with READY=1 on NOTIFY_SOCKET. On
SIGTERM it drains without a race: it stops accepting, answers any request
still arriving on an open keep-alive connection with "Connection: close",
and exits once no connection is left or only idle ones are (idle for longer
than IDLE_WAIT), bounded by GRACE seconds.

With APP_STATE_DIR set, GET /count counts requests per session (cookie
"sid", or ?session=ID) and the counts outlive the process: on SIGTERM, once
drained, it writes its sessions as JSON lines through `zd-snapshot pack` to
APP_STATE_DIR/py-SLOT.zds (encrypted when ZD_SNAPSHOT_KEY or
CONNECTION_STATE_KEY is set, which zd-snapshot reads), and it reads them back
with `zd-snapshot unpack` at start and whenever a session it does not know
arrives (a worker that saved it may have stopped since). The record schema is
in docs/snapshot-format.md; ZD_SNAPSHOT names the zd-snapshot program.

    zd-run --listen tcp://127.0.0.1:8080 --workers 2 -- python3 app.py
"""

import datetime
import glob
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

GRACE = float(os.environ.get("APP_GRACE", "25"))
IDLE_WAIT = float(os.environ.get("APP_IDLE_WAIT", "1"))

draining = threading.Event()
lock = threading.Lock()
conns = {}  # id(handler) -> [busy, last_change]

STATE_DIR = os.environ.get("APP_STATE_DIR", "")
ZD_SNAPSHOT = os.environ.get("ZD_SNAPSHOT", "zd-snapshot")
sessions = {}  # sid -> {"count": int, "created": str, "last": str}
state_seen = {}  # snapshot path -> mtime when read


def log(msg):
    print("python-http[%d]: %s" % (os.getpid(), msg), file=sys.stderr, flush=True)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_state():
    """Read the snapshots in STATE_DIR that changed since last read.

    A snapshot that zd-snapshot refuses (damaged, wrong key, newer writer) is
    logged and skipped whole: a non-zero exit means its output is incomplete.
    Call with lock held.
    """
    loaded = 0
    for path in sorted(glob.glob(os.path.join(STATE_DIR, "py-*.zds"))):
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue
        if state_seen.get(path) == mtime:
            continue
        state_seen[path] = mtime
        p = subprocess.run([ZD_SNAPSHOT, "unpack", "--filter", "kind=app-session", path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            log("session state %s refused (exit %d): %s" % (path, p.returncode, p.stderr.strip()))
            continue
        for line in p.stdout.splitlines():
            rec = json.loads(line)
            attrs = rec.get("attrs", {})
            old = sessions.get(rec["id"])
            last = rec.get("last_active", "")
            if old is None or last > old["last"]:
                sessions[rec["id"]] = {"count": int(attrs.get("count", "0")),
                                       "created": rec.get("created", ""), "last": last}
                loaded += 1
    return loaded


def save_state():
    """Write every session through zd-snapshot pack; True when it succeeded."""
    slot = os.environ.get("ZD_SLOT") or "pid%d" % os.getpid()
    path = os.path.join(STATE_DIR, "py-%s.zds" % slot)
    cmd = [ZD_SNAPSHOT, "pack", "-o", path, "--writer", "examples/python-http"]
    gen = os.environ.get("ZD_GENERATION", "")
    if gen.isdigit():
        cmd += ["--generation", gen]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    with lock:
        for sid, s in sessions.items():
            rec = {"kind": "app-session", "id": sid, "state": "idle", "worker": os.getpid(),
                   "attrs": {"count": str(s["count"])}}
            if s["created"]:
                rec["created"] = s["created"]
            if s["last"]:
                rec["last_active"] = s["last"]
            lines.append(json.dumps(rec) + "\n")
    _, err = p.communicate("".join(lines))
    if p.returncode != 0:
        log("save session state to %s failed (exit %d): %s" % (path, p.returncode, err.strip()))
        return False
    log("saved %d sessions to %s" % (len(lines), path))
    return True


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
        if STATE_DIR and self.path.split("?")[0] == "/count":
            return self.count()
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

    def count(self):
        """Count this request in its session and say the count so far."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        sid = (query.get("session") or [""])[0]
        new_cookie = False
        if not sid:
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "sid":
                    sid = value
        if not sid:
            sid, new_cookie = uuid.uuid4().hex, True
        with lock:
            if sid not in sessions:
                load_state()
            s = sessions.setdefault(sid, {"count": 0, "created": now_rfc3339(), "last": ""})
            s["count"] += 1
            s["last"] = now_rfc3339()
            data = ("session=%s count=%d pid=%d\n" % (sid, s["count"], os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if new_cookie:
            self.send_header("Set-Cookie", "sid=%s; HttpOnly; SameSite=Lax" % sid)
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
    if STATE_DIR:
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        with lock:
            n = load_state()
        if n:
            log("restored %d sessions from %s" % (n, STATE_DIR))
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
    if STATE_DIR:
        # Drained: no request can change a session any more.
        save_state()
    sys.exit(0)


if __name__ == "__main__":
    main()
