"""Load: 64 concurrent keep-alive connections of mixed requests for
T2_LOAD_SECONDS (default 60) after a warm-up of T2_LOAD_WARMUP seconds
(default 10) of the same mix.

The mix, per connection in turn: short generate (max_tokens 4, with
experts, a mixture, the prompt strategy, streamed and not), classify,
list experts, metrics, chat completion. Checks: the server stays up; every
answer is 2xx or the deliberate 429 (queue full) / 503; no connection
errors; 2xx bodies are what they should be (a client backs off 50 ms
after a 429/503); RSS (VmRSS of
/proc/PID/status) at the end within T2_LOAD_RSS_MB (default 8) MB of RSS
after the warm-up; the scheduler is idle afterwards. Prints the counts.

usage: test_load.py PATH/TO/t2
"""
import collections
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import Results, Server, load_jsonl, t2_path  # noqa: E402

R = Results("load")
SECONDS = float(os.environ.get("T2_LOAD_SECONDS", "60"))
WARMUP = float(os.environ.get("T2_LOAD_WARMUP", "10"))
RSS_MB = float(os.environ.get("T2_LOAD_RSS_MB", "8"))
CONNS = 64
BACKOFF = 0.05
# queue 32 with 64 connections: overload is possible, and must be a clean 429
S = Server(t2_path(), "--max-seqs", "8", "--queue", "32")

qs = [q["question"] for q in load_jsonl("math_test.jsonl", 4) + load_jsonl("code_test.jsonl", 4)]
ADAPT = [{"strategy": "none"}, {"expert": "math"}, {"expert": "code"},
         {"mixture": {"math": 0.6, "reasoning": 0.4}}, {"strategy": "prompt"}]


def plan(i, k):
    """The k-th request of connection i: (name, method, path, body)."""
    q = qs[(i + k) % len(qs)]
    kind = (i + k) % 8
    if kind in (0, 1):
        return ("generate", "POST", "/v1/generate",
                {"prompt": q, "max_tokens": 4, "adaptation": ADAPT[(i * 3 + k) % len(ADAPT)]})
    if kind == 2:
        return ("generate_stream", "POST", "/v1/generate",
                {"messages": [{"role": "user", "content": q}], "max_tokens": 4, "stream": True,
                 "adaptation": ADAPT[(i + k) % len(ADAPT)]})
    if kind == 3:
        return ("classify", "POST", "/v1/classify", {"prompt": q})
    if kind in (4, 5):
        return ("experts", "GET", "/v1/experts", None)
    if kind == 6:
        return ("metrics", "GET", "/metrics", None)
    return ("chat", "POST", "/v1/chat/completions",
            {"model": "seedling:math", "messages": [{"role": "user", "content": q}],
             "max_tokens": 4})


def body_ok(name, data):
    """The 2xx body is the right kind of answer (not just any 200)."""
    try:
        if name == "metrics":
            return b"t2_requests_total" in data
        if name == "generate_stream":
            return b"event: adaptation" in data and b"event: done" in data
        j = json.loads(data)
        if name == "generate":
            return isinstance(j["text"], str) and j["usage"]["completion_tokens"] <= 4
        if name == "classify":
            return j["label"] in ("math", "code", "reasoning", "other")
        if name == "experts":
            return len(j["experts"]) == 4
        if name == "chat":
            return j["object"] == "chat.completion"
    except (ValueError, KeyError, TypeError):
        return False
    return False


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = collections.Counter()  # (name, status) -> n
        self.errors = collections.Counter()  # exception kind -> n
        self.bad_bodies = []
        self.bad_status = []
        self.retry_after_missing = 0
        self.latency_max = 0.0


def client(i, stop_at, st):
    conn = S.conn(timeout=120)
    k = 0
    while time.time() < stop_at:
        name, method, path, body = plan(i, k)
        k += 1
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        t0 = time.time()
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            payload = r.read()
            status = r.status
            retry = r.getheader("Retry-After")
            closing = (r.getheader("Connection") or "").lower() == "close"
        except (OSError, http.client.HTTPException) as e:
            with st.lock:
                st.errors[type(e).__name__] += 1
            conn.close()
            conn = S.conn(timeout=120)
            continue
        dt = time.time() - t0
        with st.lock:
            st.status[(name, status)] += 1
            st.latency_max = max(st.latency_max, dt)
            if 200 <= status < 300:
                if not body_ok(name, payload):
                    st.bad_bodies.append((name, status, payload[:200]))
            elif status in (429, 503):
                if not retry:
                    st.retry_after_missing += 1
            else:
                st.bad_status.append((name, status, payload[:200]))
        if closing:
            conn.close()
            conn = S.conn(timeout=120)
        if status in (429, 503):
            time.sleep(BACKOFF)  # a polite client backs off (Retry-After's 5 s is too long here)
    conn.close()


def phase(seconds):
    st = Stats()
    stop_at = time.time() + seconds
    threads = [threading.Thread(target=client, args=(i, stop_at, st)) for i in range(CONNS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return st, time.time() - t0


def rss_kb():
    with open("/proc/%d/status" % S.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def report(title, st, took):
    total = sum(st.status.values())
    by_status = collections.Counter()
    for (name, status), n in st.status.items():
        by_status[status] += n
    print("%s: %d requests in %.1f s (%.1f/s), by status %s, connection errors %s, "
          "slowest %.2f s" % (title, total, took, total / took if took else 0,
                              dict(sorted(by_status.items())), dict(st.errors), st.latency_max))
    names = sorted({name for name, _ in st.status})
    for name in names:
        print("  %-16s %s" % (name, {s: n for (nm, s), n in sorted(st.status.items())
                                     if nm == name}))
    return total, by_status


warm, took = phase(WARMUP)
report("warm-up", warm, took)
R.check("warm-up: no connection errors", not warm.errors, dict(warm.errors))
time.sleep(1)  # let the last responses be freed
rss0 = rss_kb()
st, took = phase(SECONDS)
total, by_status = report("load", st, took)
time.sleep(1)
rss1 = rss_kb()
print("RSS after warm-up %.1f MB, after the load %.1f MB (%+.1f MB)"
      % (rss0 / 1024, rss1 / 1024, (rss1 - rss0) / 1024), flush=True)

R.check("the server stayed up", S.proc.poll() is None and S.request("GET", "/health")[0] == 200,
        S.proc.poll())
R.check("load ran: %d requests over %d connections" % (total, CONNS),
        total >= CONNS and by_status.get(200, 0) > 0, dict(by_status))
R.check("no connection errors", not st.errors, dict(st.errors))
R.check("every answer 2xx or the deliberate 429/503 (%d x 2xx, %d x 429, %d x 503)"
        % (sum(n for s, n in by_status.items() if 200 <= s < 300), by_status.get(429, 0),
           by_status.get(503, 0)), not st.bad_status, st.bad_status[:5])
R.check("429/503 carry Retry-After", st.retry_after_missing == 0, st.retry_after_missing)
R.check("every 2xx body is the right answer", not st.bad_bodies, st.bad_bodies[:5])
every_kind = {name for (name, status) in st.status if 200 <= status < 300}
R.eq("every kind of request succeeded at least once", sorted(every_kind),
     ["chat", "classify", "experts", "generate", "generate_stream", "metrics"])
R.check("RSS at the end within %g MB of RSS after the warm-up (%.1f -> %.1f MB)"
        % (RSS_MB, rss0 / 1024, rss1 / 1024), rss0 > 0 and rss1 - rss0 <= RSS_MB * 1024,
        (rss0, rss1))
_, _, data = S.request("GET", "/metrics")
gauges = [line for line in data.decode().splitlines()
          if line.startswith(("t2_running_sequences ", "t2_queue_depth "))]
R.check("the scheduler is idle afterwards", len(gauges) == 2
        and all(line.split()[1] == "0" for line in gauges), gauges)
R.eq("stopped cleanly", S.stop(), 0)
R.finish()
