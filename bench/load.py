#!/usr/bin/env python3
"""Serving load benchmark for t2 serve (Python 3 standard library only).

Closed-loop load: S client threads (S = 1, 4, 8 by default), each with its
own keep-alive connection, send streamed POST /v1/generate requests back to
back until the cell's fixed number of requests is done. Two modes:

  same   every request uses the same expert (math)
  mixed  request i uses weight set i % 4: base weights (strategy none), then
         the math, code and reasoning experts, so concurrent streams decode
         with different weights

Every request is greedy with a fixed max_tokens. t2 has no ignore_eos, and
seedling's answers are 2-4 tokens long, so by default generation is kept
going to max_tokens with repetition_penalty 100: it pushes down `<|im_end|>`
(end of sequence, present in the chat prompt), so every request generates
exactly max_tokens tokens (checked: finish_reason must be "length"; keep
max_tokens under ~60, where seedling's end of sequence wins again); the
work per token is the same as for any other token. --natural sends the
plain questions instead (short answers: mostly prefill and HTTP).

Prompts are the questions of $T2_SHARED/models/seedling/data (math, code,
reasoning, transfer in turn), the same list in both modes.

Per cell it reports aggregate generated tokens/s (completion tokens of all
requests / wall time of the cell), the ratio of that to the 1-stream figure
of the same mode (> 1: batching works), and p50/p90/p99 of request latency
(send to the `done` event) and of time to first token (send to the first
text event). Percentiles interpolate linearly between order statistics.

usage: bench/load.py [--t2 build/server/t2 | --url http://HOST:PORT]
                     [--requests 160] [--max-tokens 48] [--streams 1,4,8]
                     [--modes same,mixed] [--natural] [--threads N] [--json]
"""
import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("T2_SHARED") or os.path.join(HERE, "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "seedling")
FAMILIES = ["math", "code", "reasoning", "transfer"]
# mixed mode: request i uses WEIGHT_SETS[i % 4]; None = base weights
WEIGHT_SETS = [None, "math", "code", "reasoning"]
SAME_EXPERT = "math"
# keeps greedy generation going: on seedling's prompts, with 20 or more no
# request stops before about 60 tokens (with 10 some stop after 15)
REPETITION_PENALTY = 100


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load_prompts(n):
    """The first n questions of each family, interleaved."""
    per = []
    for fam in FAMILIES:
        with open(os.path.join(MODEL, "data", fam + "_test.jsonl")) as f:
            per.append([json.loads(line)["question"] for _, line in zip(range(n), f)])
    return [q for group in zip(*per) for q in group]


class Server:
    """t2 serve on a free port with a temporary copy of seedling's experts."""

    def __init__(self, t2, threads, extra):
        self.tmp = tempfile.mkdtemp(prefix="t2load-")
        experts = os.path.join(self.tmp, "experts")
        shutil.copytree(os.path.join(MODEL, "experts"), experts)
        os.chmod(experts, 0o755)
        for f in os.listdir(experts):
            os.chmod(os.path.join(experts, f), 0o644)
        self.log_path = os.path.join(self.tmp, "server.log")
        self.logf = open(self.log_path, "w")
        cmd = [t2, "serve", "--model", MODEL, "--port", "0", "--experts", experts,
               "--profiles", os.path.join(self.tmp, "profiles"), "--max-seqs", "8"]
        if threads:
            cmd += ["--threads", str(threads)]
        self.cmd = cmd + extra
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self.logf)
        end = time.time() + 30
        while True:
            m = re.search(r"listening on (http://\S+)", self.log())
            if m:
                self.url = m.group(1)
                break
            if self.proc.poll() is not None or time.time() > end:
                text = self.log()
                self.stop()
                raise SystemExit("t2 serve did not start:\n" + text)
            time.sleep(0.02)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        self.logf.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc


class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit("--url must be http://HOST:PORT (got %r)" % url)
        self.host, self.port = u.hostname, u.port or 80

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=600)

    def get(self, path):
        c = self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_ready(self, timeout=120, connect_timeout=10):
        """Waits for GET /ready (the model may still be loading); gives up
        after connect_timeout when nothing answers at all."""
        start = time.time()
        answered = False
        while time.time() < start + timeout:
            try:
                st, body = self.get("/ready")
                answered = True
                if st == 200:
                    return json.loads(body)
            except OSError as e:
                if not answered and time.time() > start + connect_timeout:
                    raise SystemExit("cannot connect to http://%s:%d: %s" % (self.host, self.port, e))
            time.sleep(0.05)
        raise SystemExit("server not ready after %d s" % timeout)

    def metrics(self):
        st, body = self.get("/metrics")
        out = {}
        for line in body.decode().splitlines():
            m = re.match(r"(t2_[a-z0-9_]+) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out


def stream_generate(conn, body):
    """One streamed POST /v1/generate on an open connection.
    -> dict(latency, ttft, tokens, finish_reason) (seconds)."""
    payload = json.dumps(body).encode()
    t0 = time.perf_counter()
    conn.request("POST", "/v1/generate", body=payload,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:300].decode("replace")))
    ttft = None
    event, data = None, []
    done = None
    while True:
        line = r.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if line == b"":
            if event is None and data and ttft is None:
                ttft = time.perf_counter() - t0
            elif event == "done":
                done = json.loads(b"\n".join(data))
            elif event == "error":
                raise RuntimeError("stream error: %s" % b"\n".join(data).decode("replace"))
            event, data = None, []
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
    latency = time.perf_counter() - t0
    if done is None:
        raise RuntimeError("stream ended without a done event")
    return {"latency": latency, "ttft": ttft if ttft is not None else latency,
            "tokens": done["usage"]["completion_tokens"], "finish_reason": done["finish_reason"]}


FRESH_SEQ = [0]


def make_body(question, weight_set, args):
    if isinstance(weight_set, dict):  # fresh: a mixture never seen before
        adaptation = weight_set
    elif weight_set is None:
        adaptation = {"strategy": "none"}
    else:
        adaptation = {"strategy": "expert", "expert": weight_set}
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": args.max_tokens,
            "temperature": 0, "stream": True, "adaptation": adaptation}
    if not args.natural:
        body["repetition_penalty"] = REPETITION_PENALTY
    return body


def run_cell(client, prompts, mode, streams, args):
    n = args.requests
    bodies = []
    for i in range(n):
        if mode == "same":
            ws = SAME_EXPERT
        elif mode == "base":
            ws = None
        elif mode == "fresh":  # a new mixture key for every request: always a cache miss
            ws = {"strategy": "mixture",
                  "mixture": {"math": 0.5 + (FRESH_SEQ[0] + 1) * 1e-4, "code": 0.5}}
            FRESH_SEQ[0] += 1
        else:
            ws = WEIGHT_SETS[i % len(WEIGHT_SETS)]
        bodies.append(make_body(prompts[i % len(prompts)], ws, args))
    results = [None] * n
    errors = []
    next_i = [0]
    lock = threading.Lock()
    start = threading.Barrier(streams + 1)

    def worker():
        conn = client.conn()
        start.wait()
        try:
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= n or errors:
                    return
                if args.pause and i >= streams:
                    time.sleep(args.pause)
                try:
                    results[i] = stream_generate(conn, bodies[i])
                except (OSError, RuntimeError, http.client.HTTPException, ValueError) as e:
                    errors.append("request %d: %s" % (i, e))
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(streams)]
    for t in threads:
        t.start()
    m0 = client.metrics()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    m1 = client.metrics()
    if errors:
        raise SystemExit("%s x%d failed: %s" % (mode, streams, errors[0]))
    tokens = sum(r["tokens"] for r in results)
    not_length = sum(1 for r in results if r["finish_reason"] != "length")
    if not args.natural and not_length:
        raise SystemExit("%s x%d: %d request(s) ended before max_tokens (finish_reason != length);"
                         " use a smaller --max-tokens or --natural" % (mode, streams, not_length))
    lat = sorted(r["latency"] for r in results)
    ttft = sorted(r["ttft"] for r in results)
    # per-stream decode speed after the first token
    decode = sorted((r["tokens"] - 1) / (r["latency"] - r["ttft"])
                    for r in results if r["tokens"] > 1 and r["latency"] > r["ttft"])
    return {
        "mode": mode, "streams": streams, "requests": n, "tokens": tokens, "wall_s": wall,
        "tokens_per_s": tokens / wall, "requests_per_s": n / wall,
        "latency_ms": {p: 1000 * pct(lat, p) for p in (50, 90, 99)},
        "ttft_ms": {p: 1000 * pct(ttft, p) for p in (50, 90, 99)},
        "stream_decode_tokens_per_s_p50": pct(decode, 50) if decode else None,
        "server_tokens_generated": m1.get("t2_tokens_generated_total", 0) - m0.get("t2_tokens_generated_total", 0),
        "adapted_cache_misses": m1.get("t2_adapted_cache_misses_total", 0) - m0.get("t2_adapted_cache_misses_total", 0),
    }


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def table(cells):
    head = ["mode", "streams", "req", "tokens", "wall s", "tok/s", "x 1-stream",
            "lat p50", "p90", "p99", "TTFT p50", "p90", "p99", "stream tok/s"]
    rows = []
    for c in cells:
        rows.append([c["mode"], str(c["streams"]), str(c["requests"]), str(c["tokens"]),
                     "%.2f" % c["wall_s"], "%.1f" % c["tokens_per_s"],
                     "%.2f" % c["ratio_to_1_stream"] if c.get("ratio_to_1_stream") else "-"]
                    + ["%.0f" % c["latency_ms"][p] for p in (50, 90, 99)]
                    + ["%.1f" % c["ttft_ms"][p] for p in (50, 90, 99)]
                    + ["%.1f" % c["stream_decode_tokens_per_s_p50"]
                       if c["stream_decode_tokens_per_s_p50"] else "-"])
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(head)) + " |",
           "|" + "|".join("-" * (x + 2) if i < 1 else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i])
                                     for i, v in enumerate(r)) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="latencies in ms; 'stream tok/s' is the median per-request "
                                        "decode speed after the first token")
    ap.add_argument("--t2", default=os.path.join(HERE, "..", "build", "server", "t2"),
                    help="t2 binary to start (default: build/server/t2)")
    ap.add_argument("--url", help="benchmark a running server instead (it needs the experts "
                                  "math, code and reasoning of seedling)")
    ap.add_argument("--requests", type=int, default=160, help="requests per cell (default 160)")
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per request (default 48)")
    ap.add_argument("--streams", default="1,4,8", help="concurrent streams (default 1,4,8)")
    ap.add_argument("--modes", default="same,mixed",
                    help="comma-separated: same, mixed (default both), base (strategy none), "
                         "fresh (a never-seen mixture per request: compare its TTFT with base)")
    ap.add_argument("--natural", action="store_true",
                    help="plain greedy answers (2-4 tokens) instead of max_tokens each")
    ap.add_argument("--threads", type=int, default=0,
                    help="--threads for the started server (default: its default, one per core)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra flag for the started server (repeatable)")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds a stream waits before its next request (default 0: closed "
                         "loop); with --streams 1, isolates each request's TTFT from the previous "
                         "one's background work")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("same", "mixed", "base", "fresh") for m in modes) or not streams or min(streams) < 1:
        ap.error("bad --modes or --streams")
    if args.requests < 1 or args.max_tokens < 1:
        ap.error("--requests and --max-tokens must be positive")

    server = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        server = Server(os.path.abspath(args.t2), args.threads, args.server_arg)
        url = server.url
    try:
        client = Client(url)
        ready = client.wait_ready()
        st, body = client.get("/v1/experts")
        have = {e["name"] for e in json.loads(body)["experts"]} if st == 200 else set()
        missing = [e for e in WEIGHT_SETS if e and e not in have]
        if missing:
            raise SystemExit("the server lacks the experts %s" % ", ".join(missing))
        prompts = load_prompts(max(8, (args.requests + 3) // 4))
        # warm-up: every weight set once, then one concurrent burst (pages,
        # adapted weights, OpenBLAS buffers, the batch's memory)
        warm = argparse.Namespace(**vars(args))
        warm.max_tokens = min(args.max_tokens, 8)
        conn = client.conn()
        for i, ws in enumerate(WEIGHT_SETS):
            stream_generate(conn, make_body(prompts[i], ws, warm))
        conn.close()
        warm.requests = max(streams)
        run_cell(client, prompts, "mixed", max(streams), warm)

        load_before = os.getloadavg()
        cpu0 = time.process_time()
        cells = []
        for mode in modes:
            base = None
            for s in sorted(streams):
                log("load: %s, %d stream(s), %d requests ..." % (mode, s, args.requests))
                c = run_cell(client, prompts, mode, s, args)
                if s == 1:
                    base = c["tokens_per_s"]
                c["ratio_to_1_stream"] = c["tokens_per_s"] / base if base else None
                cells.append(c)
        load_after = os.getloadavg()
        client_cpu = time.process_time() - cpu0
        total_wall = sum(c["wall_s"] for c in cells)
    finally:
        rc = server.stop() if server else None
    if server and rc != 0:
        log("warning: t2 serve exited with status %s" % rc)

    info = {
        "url": None if server else url, "server_cmd": server.cmd if server else None,
        "model": ready.get("model"), "max_tokens": args.max_tokens,
        "requests_per_cell": args.requests,
        "workload": "natural" if args.natural else "fixed-length (greedy, repetition_penalty %g)" % REPETITION_PENALTY,
        "same_expert": SAME_EXPERT, "mixed_weight_sets": [w or "base" for w in WEIGHT_SETS],
        "cpus": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "client_cpu_s": client_cpu, "cells_wall_s": total_wall,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    if args.json:
        print(json.dumps({"info": info, "cells": cells}, indent=2))
        return
    print("t2 serve load: model %s, %d requests per cell, max_tokens %d (%s), %d CPUs (%s)"
          % (info["model"], args.requests, args.max_tokens, info["workload"], info["cpus"],
             info["cpu_model"]))
    print("same: every request with expert %s; mixed: weight sets %s in turn"
          % (SAME_EXPERT, ", ".join(info["mixed_weight_sets"])))
    print()
    print(table(cells))
    print()
    for c in cells:
        if c["streams"] != 1 and c.get("ratio_to_1_stream"):
            print("%-5s %d streams: %.2fx the 1-stream tokens/s" % (c["mode"], c["streams"],
                                                                   c["ratio_to_1_stream"]))
    print("load average before/after: %.2f / %.2f; this client used %.1f CPU s in %.1f s of load"
          " (%d CPUs)" % (load_before[0], load_after[0], client_cpu, total_wall, info["cpus"]),
          flush=True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
