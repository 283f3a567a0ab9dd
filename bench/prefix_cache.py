#!/usr/bin/env python3
"""Prompt caching: time to first token of chat requests that share a long
system prompt (warm: a finished request's context holds it) against requests
whose system prompt differs at its first token (cold), interleaved so both
see the same machine. Starts `t2 serve` on a free loopback port.

usage: bench/prefix_cache.py [--t2 build/server/t2] [--model DIR] [--pairs 30]
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.dont_write_bytecode = True
from t2test import MODEL, Server  # noqa: E402


def ttft(server, system, question):
    body = json.dumps({"messages": [{"role": "system", "content": system},
                                    {"role": "user", "content": question}],
                       "max_tokens": 2, "stream": True, "adaptation": {"strategy": "none"}})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/generate", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit("HTTP %d: %s" % (resp.status, resp.read()[:300]))
    first = usage = None
    for line in resp:
        line = line.decode().strip()
        if first is None and line.startswith('data: {"text"'):
            first = (time.perf_counter() - t0) * 1000
        if line.startswith("data:") and '"usage"' in line:
            usage = json.loads(line[5:])["usage"]
    conn.close()
    return first, usage


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--t2", default=os.path.join(HERE, "..", "build", "server", "t2"))
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--pairs", type=int, default=30, help="cold/warm request pairs (default 30)")
    ap.add_argument("--repeat", type=int, default=12,
                    help="copies of the system prompt's sentence (default 12: ~400 tokens)")
    args = ap.parse_args()
    system = ("You are a careful assistant who answers briefly. " * args.repeat).strip()
    server = Server(os.path.abspath(args.t2), "--model", args.model)
    try:
        ttft(server, system, "warm up")
        cold, warm, tokens, cached = [], [], [], []
        for i in range(args.pairs):
            t, u = ttft(server, "Note %d. %s" % (i, system), "What is %d + %d?" % (i, 2 * i))
            cold.append(t)
            tokens.append(u["prompt_tokens"])
            t, u = ttft(server, system, "What is %d + %d?" % (i, 3 * i))
            warm.append(t)
            cached.append(u["prompt_tokens_details"]["cached_tokens"])
    finally:
        server.stop()
    c, w = statistics.median(cold), statistics.median(warm)
    print("prompt %d tokens, %d cached on warm requests (medians of %d pairs)"
          % (statistics.median(tokens), statistics.median(cached), args.pairs))
    print("time to first token p50: cold %.1f ms, warm %.1f ms, warm / cold %.2f" % (c, w, w / c))


if __name__ == "__main__":
    main()
