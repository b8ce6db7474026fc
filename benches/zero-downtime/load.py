#!/usr/bin/env python3
"""The zero-downtime benchmark's load loop (python3 standard library only): the same loop as
tests/integration/harness/load.rs, for the shell.

    load.py [--clients C] [--path /] [--ready FILE] --out FILE NAME=PORT...

C clients per target (default 6), each looping `GET PATH` on 127.0.0.1:PORT, one connection per
request (HTTP/1.0, `Connection: close`: no keep-alive). A request failed when the answer is
not 200, the connection fails, or the whole answer takes longer than 5 s; after a failure its
client waits 10 ms (a refused connection would otherwise spin). The demo app answers GET / with
200 even when its database does not answer (its `db=` line says `error: …`): such answers are
counted apart, as db errors. Runs until SIGTERM or SIGINT, then writes FILE (JSON, times are
Unix seconds):

    {"started": T, "ended": T, "clients": C, "keep_alive": false,
     "hosts": {NAME: {"ok": N, "failed": N, "reasons": {WHY: N}, "first_failures": [[T, WHY]],
                      "last_failure": [T, WHY], "db_errors": N, "first_db_errors": [[T, DB]],
                      "flips": [[T, VERSION]], "last_version": V}}}

`flips` lists each change of the `version=` line of the answers (the demo app's plain
answer), in the order they ended, starting with the first answer's. With --ready, FILE is
created once every target answered one request with 200.
"""
import argparse
import asyncio
import json
import signal
import sys
import time

REQUEST_TIMEOUT = 5.0
BACKOFF = 0.01
FAILURES_KEPT = 20


class Host:
    def __init__(self, name):
        self.name = name
        self.ok = 0
        self.failed = 0
        self.reasons = {}
        self.first_failures = []
        self.last_failure = None
        self.db_errors = 0
        self.first_db_errors = []
        self.flips = []

    def answered(self, at, version, db):
        self.ok += 1
        if db != "ok":
            self.db_errors += 1
            if len(self.first_db_errors) < FAILURES_KEPT:
                self.first_db_errors.append([at, db])
        if not self.flips or self.flips[-1][1] != version:
            self.flips.append([at, version])

    def failure(self, at, why):
        self.failed += 1
        self.reasons[why] = self.reasons.get(why, 0) + 1
        if len(self.first_failures) < FAILURES_KEPT:
            self.first_failures.append([at, why])
        self.last_failure = [at, why]

    def summary(self):
        return {
            "ok": self.ok,
            "failed": self.failed,
            "reasons": self.reasons,
            "first_failures": self.first_failures,
            "last_failure": self.last_failure,
            "db_errors": self.db_errors,
            "first_db_errors": self.first_db_errors,
            "flips": self.flips,
            "last_version": self.flips[-1][1] if self.flips else None,
        }


def field(body, key, missing):
    """The value of the body's KEY= line (the demo app's plain answer)."""
    for line in body.splitlines():
        if line.startswith(key + "="):
            return line[len(key) + 1:].strip()
    return missing


async def request(port, path):
    """(version, db) of a 200 answer; raises RuntimeError(why) for anything else."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, sep, body = raw.decode("utf-8", "replace").partition("\r\n\r\n")
    if not sep:
        raise RuntimeError("incomplete answer (%d bytes)" % len(raw))
    parts = head.split()
    status = parts[1] if len(parts) > 1 else "none"
    if status != "200":
        raise RuntimeError("HTTP %s" % status)
    return field(body, "version", "?"), field(body, "db", "ok")


async def client(host, port, path, stop):
    while not stop.is_set():
        try:
            version, db = await asyncio.wait_for(request(port, path), REQUEST_TIMEOUT)
        except asyncio.TimeoutError:
            host.failure(time.time(), "timeout after %ds" % REQUEST_TIMEOUT)
        except RuntimeError as e:
            host.failure(time.time(), str(e))
        except OSError as e:
            host.failure(time.time(), "%s: %s" % (type(e).__name__, e.strerror or e))
        else:
            host.answered(time.time(), version, db)
            continue
        await asyncio.sleep(BACKOFF)


async def mark_ready(hosts, ready_file, stop):
    while not stop.is_set():
        if all(h.ok > 0 for h in hosts):
            with open(ready_file, "w", encoding="utf-8") as f:
                f.write("%f\n" % time.time())
            return
        await asyncio.sleep(0.05)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--path", default="/")
    parser.add_argument("--ready")
    parser.add_argument("--out", required=True)
    parser.add_argument("targets", nargs="+", metavar="NAME=PORT")
    args = parser.parse_args()
    targets = []
    for t in args.targets:
        name, sep, port = t.partition("=")
        if not sep or not port.isdigit():
            parser.error("targets are NAME=PORT: %s" % t)
        targets.append((Host(name), int(port)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.time()
    tasks = [asyncio.create_task(client(h, port, args.path, stop))
             for h, port in targets for _ in range(args.clients)]
    if args.ready:
        tasks.append(asyncio.create_task(mark_ready([h for h, _ in targets], args.ready, stop)))
    await stop.wait()
    # Each client finishes the request it is in.
    await asyncio.gather(*tasks)
    result = {
        "started": started,
        "ended": time.time(),
        "clients": args.clients,
        "keep_alive": False,
        "hosts": {h.name: h.summary() for h, _ in targets},
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    total_ok = sum(h.ok for h, _ in targets)
    total_failed = sum(h.failed for h, _ in targets)
    db_errors = sum(h.db_errors for h, _ in targets)
    print("load: %d ok (%d with a db error), %d failed over %.1fs"
          % (total_ok, db_errors, total_failed, result["ended"] - started), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
