#!/usr/bin/env python3
"""Pixel, the demo app of dropship's local fleet (python3 standard library only).

GET /          plain text, one `key=value` a line: version (VERSION), image (the tag baked
               into the image, /app/IMAGE_TAG), instance (INSTANCE), secret_fingerprint (first
               12 hex digits of sha256(DJANGO_SECRET_KEY), never the secret), db (`ok` after a
               `SELECT 1` with POSTGRES_HOST/DB/USER/PASSWORD, else `error: ...`).
               JSON instead with `?format=json` or `Accept: application/json`.
GET /healthz   200 `ok` when the database answers, else 503.

At start it writes static/hello.txt into /app/public/static (the volume nginx serves as
/static/). Listens on APP_PORT (default 8000).
"""
import glob
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse

STATIC_DIR = "/app/public/static"


def image_tag():
    try:
        with open("/app/IMAGE_TAG", encoding="utf-8") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


def secret_fingerprint():
    secret = os.environ.get("DJANGO_SECRET_KEY")
    if not secret:
        return "none"
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def psql_binary():
    # Debian's /usr/bin/psql is a perl wrapper: call the real binary.
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    return found[-1] if found else (shutil.which("psql") or "psql")


def check_db():
    """(True, "ok") or (False, "error: ...") after a `SELECT 1`. The password goes to psql in
    its environment (PGPASSWORD), never on its command line."""
    host = os.environ.get("POSTGRES_HOST", "db")
    port = os.environ.get("POSTGRES_PORT", "5432")
    user = os.environ.get("POSTGRES_USER", "postgres")
    db = os.environ.get("POSTGRES_DB", user)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "PGPASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
        "PGCONNECT_TIMEOUT": "3",
        "PGAPPNAME": "pixel",
    }
    cmd = [psql_binary(), "-X", "-q", "-t", "-A", "-w", "-v", "ON_ERROR_STOP=1",
           "-h", host, "-p", port, "-U", user, "-d", db, "-c", "SELECT 1"]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "error: %s" % e
    if r.returncode == 0 and r.stdout.strip() == "1":
        return True, "ok"
    lines = [l.strip() for l in r.stderr.splitlines() if l.strip()]
    return False, "error: %s" % (lines[-1] if lines else "psql exited %d" % r.returncode)


def info():
    ok, db = check_db()
    return ok, {
        "version": os.environ.get("VERSION", "unknown"),
        "image": image_tag(),
        "instance": os.environ.get("INSTANCE", "unknown"),
        "secret_fingerprint": secret_fingerprint(),
        "db": db,
    }


def write_static():
    os.makedirs(STATIC_DIR, exist_ok=True)
    text = "hello from pixel version=%s image=%s instance=%s\n" % (
        os.environ.get("VERSION", "unknown"), image_tag(), os.environ.get("INSTANCE", "unknown"))
    tmp = os.path.join(STATIC_DIR, ".hello.txt.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(STATIC_DIR, "hello.txt"))


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pixel"
    sys_version = ""

    def send(self, code, body, ctype="text/plain; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/":
            ok, fields = info()
            query = urllib.parse.parse_qs(url.query)
            if "json" in query.get("format", []) or "application/json" in self.headers.get("Accept", ""):
                self.send(200, json.dumps(fields) + "\n", "application/json")
            else:
                self.send(200, "".join("%s=%s\n" % kv for kv in fields.items()))
        elif url.path == "/healthz":
            ok, db = check_db()
            self.send(200 if ok else 503, "ok\n" if ok else "db %s\n" % db)
        else:
            self.send(404, "not found\n")

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    # PID 1 in a container: SIGTERM's default action would be ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("APP_PORT", "8000"))
    write_static()
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print("pixel version=%s image=%s instance=%s listening on :%d" % (
        os.environ.get("VERSION", "unknown"), image_tag(), os.environ.get("INSTANCE", "unknown"), port),
        flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
