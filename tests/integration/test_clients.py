"""Slow and broken clients: none blocks the others, and every slot a
vanished client held is freed.

- 16 clients send their request headers one byte every 0.15 s while other
  requests (generate, metrics, experts) are answered promptly; the slow ones
  get their answer in the end.
- 100 connections that send nothing, and 8 that send a body shorter than
  their Content-Length and stall: others are served meanwhile; the server
  closes the stalled ones after idle_timeout (3 s here); those that close
  first are logged as 499.
- A client that disconnects in the middle of an SSE stream, one that
  disconnects while its non-streamed generation runs, and one that
  disconnects while queued behind another: their generations stop early
  (far fewer tokens than max_tokens reach the metrics), the scheduler's
  running and queued counts return to 0, and the next request is served.

usage: test_clients.py PATH/TO/t2
"""
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import Results, Server, t2_path  # noqa: E402

R = Results("clients")
IDLE = 3
S = Server(t2_path(), "--max-seqs", "1", "--idle-timeout", str(IDLE))
SHORT = {"prompt": "What is 2 + 3?", "max_tokens": 4, "adaptation": {"strategy": "none"}}
# 510 tokens on seedling's 512-token context: long enough to disconnect in the middle
LONG_MAX = 510
LONG = {"prompt": "a", "max_tokens": LONG_MAX, "temperature": 20, "seed": 2,
        "repetition_penalty": 1.3, "adaptation": {"strategy": "none"}}


def metrics():
    st, _, data = S.request("GET", "/metrics", timeout=30)
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^(t2_\w+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def idle_counts():
    m = metrics()
    return m.get("t2_running_sequences"), m.get("t2_queue_depth")


def wait_idle(timeout=20):
    """Waits until nothing runs or waits in the scheduler; -> seconds taken or None."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if idle_counts() == (0, 0):
            return time.time() - t0
        time.sleep(0.02)
    return None


def wait_running(timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if idle_counts()[0] == 1:
            return True
        time.sleep(0.005)
    return False


def tokens():
    return metrics().get("t2_tokens_generated_total", 0)


def prompt_latencies(n):
    """n quick requests of mixed kinds, one after the other -> their latencies."""
    lat = []
    for i in range(n):
        t0 = time.time()
        if i % 3 == 0:
            st, body, _ = S.json("POST", "/v1/generate", SHORT, timeout=30)
        elif i % 3 == 1:
            st = S.request("GET", "/metrics", timeout=30)[0]
        else:
            st = S.request("GET", "/v1/experts", timeout=30)[0]
        lat.append((time.time() - t0, st))
    return lat


def raw_request(method, path, body=b"", headers=""):
    return ("%s %s HTTP/1.1\r\nHost: t2\r\n%sContent-Length: %d\r\n\r\n"
            % (method, path, headers, len(body))).encode() + body


def read_response(sock):
    out = b""
    while True:
        try:
            got = sock.recv(65536)
        except OSError:
            break
        if not got:
            break
        out += got
        head, sep, rest = out.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: *(\d+)", head.lower())
        if sep and m and len(rest) >= int(m.group(1)):
            break
    return out


# ---------------- headers byte by byte ----------------
slow_results = [None] * 16


def slow_client(i):
    req = b"GET /health HTTP/1.1\r\nHost: t2\r\nConnection: close\r\n\r\n"
    try:
        sock = socket.create_connection((S.host, S.port), timeout=60)
        for b in req:
            sock.sendall(bytes([b]))
            time.sleep(0.15)
        slow_results[i] = read_response(sock)
        sock.close()
    except OSError as e:
        slow_results[i] = repr(e).encode()


t0 = time.time()
slow = [threading.Thread(target=slow_client, args=(i,)) for i in range(16)]
for t in slow:
    t.start()
time.sleep(0.5)
lat = prompt_latencies(15)
worst = max(x[0] for x in lat)
R.check("while 16 clients send headers byte by byte: 15 requests served (worst %.3f s)" % worst,
        all(st == 200 for _, st in lat) and worst < 3, lat)
R.check("... and the slow clients were still sending meanwhile",
        any(t.is_alive() for t in slow), "slow clients finished too early")
for t in slow:
    t.join()
R.check("the byte-by-byte clients get their 200 in the end (after %.1f s)" % (time.time() - t0),
        all(r is not None and r.startswith(b"HTTP/1.1 200") for r in slow_results),
        [r[:40] if r else r for r in slow_results])

# ---------------- silent connections and short bodies ----------------
silent = [socket.create_connection((S.host, S.port), timeout=30) for _ in range(100)]
stalled = []
for i in range(8):
    sock = socket.create_connection((S.host, S.port), timeout=IDLE + 20)
    sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: t2\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"prompt": "x", ')
    stalled.append(sock)
time.sleep(0.3)
lat = prompt_latencies(9)
worst = max(x[0] for x in lat)
R.check("with 100 silent connections and 8 stalled bodies: requests served (worst %.3f s)"
        % worst, all(st == 200 for _, st in lat) and worst < 3, lat)
for sock in stalled[:4]:  # these give up and close
    sock.close()
t0 = time.time()
closed_by_server = 0
for sock in stalled[4:] + silent[:4]:  # these wait: the server must hang up on them
    try:
        got = sock.recv(65536)
        closed_by_server += got == b"" or got.startswith(b"HTTP/1.1 4")
    except OSError:
        closed_by_server += 1
    sock.close()
waited = time.time() - t0
R.check("stalled bodies and silent connections closed by the server after idle_timeout "
        "(%d of 8, %.1f s)" % (closed_by_server, waited),
        closed_by_server == 8 and waited < IDLE + 10, (closed_by_server, waited))
for sock in silent[4:]:
    sock.close()
R.eq("generate after the stalls", S.json("POST", "/v1/generate", SHORT)[0], 200)

# ---------------- disconnect mid-SSE stream ----------------
st, body, _ = S.json("POST", "/v1/generate", LONG)
R.check("the long request alone runs to max_tokens", st == 200
        and body["usage"]["completion_tokens"] == LONG_MAX, (st, body.get("usage")))
before = tokens()
sock = socket.create_connection((S.host, S.port), timeout=30)
sock.sendall(raw_request("POST", "/v1/generate", json.dumps(dict(LONG, stream=True)).encode(),
                         "Content-Type: application/json\r\n"))
got = b""
while got.count(b"data: {\"text\"") < 3:
    more = sock.recv(4096)
    if not more:
        break
    got += more
R.check("SSE stream started (adaptation event and text)",
        got.startswith(b"HTTP/1.1 200") and b"event: adaptation" in got, got[:300])
sock.close()
took = wait_idle()
R.check("after the disconnect mid-stream: running and queued back to 0", took is not None, took)
spent = tokens() - before
R.check("the abandoned stream stopped early (%d of %d tokens)" % (spent, LONG_MAX),
        0 < spent < LONG_MAX, spent)
R.eq("the next request is served", S.json("POST", "/v1/generate", SHORT)[0], 200)

# ---------------- disconnect mid non-streamed generate ----------------
before = tokens()
sock = socket.create_connection((S.host, S.port), timeout=30)
sock.sendall(raw_request("POST", "/v1/generate", json.dumps(LONG).encode(),
                         "Content-Type: application/json\r\n"))
R.check("non-streamed long generation running", wait_running())
sock.close()
took = wait_idle()
R.check("after the disconnect mid-generate: running and queued back to 0", took is not None, took)
spent = tokens() - before
R.check("the abandoned generation stopped early (%d of %d tokens)" % (spent, LONG_MAX),
        spent < LONG_MAX, spent)
R.eq("the next request is served", S.json("POST", "/v1/generate", SHORT)[0], 200)

# ---------------- disconnect while queued (one sequence at a time) ----------------
before = tokens()
holder = {}


def hold():
    holder["r"] = S.json("POST", "/v1/generate", LONG)


th = threading.Thread(target=hold)
th.start()
R.check("first long generation running", wait_running())
sock = socket.create_connection((S.host, S.port), timeout=30)
sock.sendall(raw_request("POST", "/v1/generate", json.dumps(LONG).encode(),
                         "Content-Type: application/json\r\n"))
t0 = time.time()
queued = False
while time.time() - t0 < 10 and not queued:
    queued = idle_counts()[1] == 1
    time.sleep(0.005)
sock.close()
th.join()
st, body, _ = holder["r"]
R.check("the request in front finishes normally", st == 200
        and body["usage"]["completion_tokens"] == LONG_MAX, (st, body))
took = wait_idle()
R.check("the queued request that left never runs: back to 0 (queued seen: %s)" % queued,
        took is not None, took)
spent = tokens() - before
R.check("tokens: the first request's only (%d)" % spent,
        LONG_MAX <= spent < 2 * LONG_MAX, spent)
R.eq("the next request is served", S.json("POST", "/v1/generate", SHORT)[0], 200)

m = metrics()
R.check("client-gone requests counted as 499 in the metrics",
        m.get('t2_requests_total{endpoint="/v1/generate",status="499"}', 0) >= 5,
        {k: v for k, v in m.items() if "requests_total" in k})
R.eq("stopped cleanly", S.stop(cleanup=False), 0)
log = S.log()
R.check("access log shows the vanished clients (499)",
        log.count("access: POST /v1/generate 499") >= 5, log[-3000:])
S.stop()
R.finish()
