"""Concurrency: 8 simultaneous greedy requests with different experts give
the same text as when run alone; seeded long generations batched together
too; a full queue answers 429.

usage: test_concurrency.py PATH/TO/t2
"""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import Results, Server, load_jsonl, t2_path  # noqa: E402

R = Results("concurrency")
T2 = t2_path()
S = Server(T2, "--max-seqs", "8")

qs = load_jsonl("math_test.jsonl", 3) + load_jsonl("code_test.jsonl", 3) + \
    load_jsonl("reasoning_test.jsonl", 2)
adapt = [{"strategy": "none"}, {"expert": "math"}, {"expert": "code"}, {"expert": "reasoning"},
         {"mixture": {"math": 0.5, "reasoning": 0.5}}, {"expert": "math"}, {"expert": "code"},
         {"strategy": "prompt"}]
reqs = [{"messages": [{"role": "user", "content": q["question"]}], "max_tokens": 32,
         "adaptation": a} for q, a in zip(qs, adapt)]
# long seeded generations keep the batch busy across many decode steps
reqs += [{"prompt": "a", "max_tokens": 96, "temperature": 20, "seed": 10 + i,
          "adaptation": a} for i, a in enumerate(adapt[:4])]


def run(body):
    st, b, _ = S.json("POST", "/v1/generate", body)
    return (st, b.get("text") if st == 200 else b)


alone = [run(r) for r in reqs]
R.check("all succeed alone", all(st == 200 for st, _ in alone), alone)
together = [None] * len(reqs)


def worker(i):
    together[i] = run(reqs[i])


for rnd in range(2):
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(reqs)):
        R.check("round %d request %d (%s): same text together as alone"
                % (rnd, i, reqs[i]["adaptation"]), together[i] == alone[i],
                (together[i], alone[i]))
# the same requests streamed at once: each stream's text is its text alone
streamed = [None] * len(reqs)


def stream_worker(i):
    st, _, events = S.stream("/v1/generate", dict(reqs[i], stream=True))
    streamed[i] = (st, "".join(json.loads(d)["text"] for e, d in events if e is None)
                   if st == 200 and events and events[-1][0] == "done" else events)


threads = [threading.Thread(target=stream_worker, args=(i,)) for i in range(len(reqs))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i in range(len(reqs)):
    R.check("streamed together, request %d: same text as alone" % i, streamed[i] == alone[i],
            (streamed[i], alone[i]))
R.eq("stopped cleanly", S.stop(), 0)

# one sequence at a time and a queue of one: a burst overflows it
S = Server(T2, "--max-seqs", "1", "--queue", "1")
long_req = {"prompt": "a", "max_tokens": 300, "temperature": 20, "seed": 2,
            "adaptation": {"strategy": "none"}}
res = [None] * 5


def burst(i):
    st, b, h = S.json("POST", "/v1/generate", long_req)
    res[i] = (st, h.get("retry-after"), b)


threads = [threading.Thread(target=burst, args=(i,)) for i in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
statuses = sorted(r[0] for r in res)
R.check("burst: some 200, some 429", 200 in statuses and 429 in statuses, statuses)
R.check("429 carries Retry-After and the error object",
        all(r[1] and "error" in r[2] for r in res if r[0] == 429), res)
R.eq("stopped cleanly", S.stop(), 0)
R.finish()
