#!/usr/bin/env python3
"""Examist's API server (a stand-in: python3 standard library only).

GET /api/health   200 `server=ok db=ok` when the database port answers, else 503.
GET /api/         JSON: the server's build and settings (never the password).
--init-db         waits for the database to accept connections, then exits 0 (what a schema
                  migration would do; the playbook runs it with `compose exec`).
"""
import http.server
import json
import os
import socket
import sys
import time


def db_ok():
    try:
        with socket.create_connection((os.environ.get("DB_HOST", "db"), int(os.environ.get("DB_PORT", "5432"))), timeout=3):
            return True
    except OSError:
        return False


class Handler(http.server.BaseHTTPRequestHandler):
    def send(self, code, body, ctype="text/plain; charset=utf-8"):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/api/health"):
            ok = db_ok()
            self.send(200 if ok else 503, "server=ok db=%s\n" % ("ok" if ok else "down"))
        elif self.path.startswith("/api/"):
            info = {"db_name": os.environ.get("DB_NAME"), "db_user": os.environ.get("DB_USER"), "host": self.headers.get("Host")}
            self.send(200, json.dumps(info) + "\n", "application/json")
        else:
            self.send(404, "not found\n")


def main():
    if "--init-db" in sys.argv:
        for _ in range(60):
            if db_ok():
                print("database reachable")
                return
            time.sleep(1)
        sys.exit("database not reachable after 60 s")
    server = http.server.ThreadingHTTPServer((os.environ.get("APP_HOST", "0.0.0.0"), int(os.environ.get("APP_PORT", "5000"))), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
