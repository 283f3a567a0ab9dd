"""Every endpoint of t2 serve against the real binary on the seedling model:
happy paths, each error status, streaming framing and equality with the
non-streamed text, expert upload/list/generate/delete, profiles via
/v1/adapt, CORS, metrics and the access log.

usage: test_endpoints.py PATH/TO/t2   (T2_SHARED: the shared data dir)
"""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import MODEL, Results, Server, load_jsonl, t2_path  # noqa: E402

R = Results("endpoints")
S = Server(t2_path(), "--max-body", "1", "--default-strategy", "prompt")
MATH = load_jsonl("math_test.jsonl", 2)
Q = MATH[0]["question"]


def err_ok(what, status, body, want_status, param=None):
    ok = status == want_status and isinstance(body, dict) and "error" in body
    e = body.get("error", {}) if isinstance(body, dict) else {}
    ok = ok and all(k in e for k in ("message", "type", "code"))
    if param is not None:
        ok = ok and e.get("param") == param
    R.check("%s -> %d" % (what, want_status), ok, "got %d %r" % (status, body))


def gen(body):
    return S.json("POST", "/v1/generate", body)


# ---------------- basics ----------------
st, body, _ = S.json("GET", "/health")
R.check("GET /health", st == 200 and body == {"status": "ok"}, (st, body))
st, body, _ = S.json("GET", "/ready")
R.check("GET /ready", st == 200 and body.get("status") == "ready", (st, body))
st, hdrs, data = S.request("GET", "/nope")
R.eq("unknown route 404", st, 404)
st, hdrs, data = S.request("DELETE", "/v1/generate")
R.check("wrong method 405 with Allow", st == 405 and "POST" in hdrs.get("allow", ""), (st, hdrs))
st, body, hdrs = S.json("GET", "/v1/models")
ids = [m["id"] for m in body["data"]] if st == 200 else []
R.check("GET /v1/models", st == 200 and body["object"] == "list" and "seedling" in ids
        and "seedling:math" in ids and "seedling:reasoning" in ids, (st, body))
R.eq("GET /v1/models/seedling:math", S.request("GET", "/v1/models/seedling:math")[0], 200)
R.eq("GET /v1/models/unknown 404", S.request("GET", "/v1/models/llama")[0], 404)

# ---------------- CORS ----------------
st, hdrs, _ = S.request("OPTIONS", "/v1/generate", headers={
    "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, authorization"})
R.check("preflight generate", st == 204 and hdrs.get("access-control-allow-origin") == "*"
        and "POST" in hdrs.get("access-control-allow-methods", "")
        and "access-control-max-age" in hdrs, (st, hdrs))
st, hdrs, _ = S.request("OPTIONS", "/v1/experts/math", headers={
    "Origin": "https://app.example", "Access-Control-Request-Method": "PUT"})
R.check("preflight of a mutation: no CORS by default",
        st == 204 and "access-control-allow-origin" not in hdrs, (st, hdrs))
st, hdrs, _ = S.request("GET", "/v1/models", headers={"Origin": "https://app.example"})
R.check("CORS header on a generation endpoint", hdrs.get("access-control-allow-origin") == "*",
        hdrs)

# ---------------- /v1/generate ----------------
st, body, _ = gen({"prompt": Q, "max_tokens": 16, "adaptation": {"strategy": "none"}})
R.check("generate prompt", st == 200 and isinstance(body.get("text"), str)
        and body["finish_reason"] in ("stop", "length")
        and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]
        + body["usage"]["completion_tokens"], (st, body))
first_text = body.get("text") if st == 200 else None
# the same prompt again: the finished job's context still holds it
st, body, _ = gen({"prompt": Q, "max_tokens": 16, "adaptation": {"strategy": "none"}})
cached = body.get("usage", {}).get("prompt_tokens_details", {}).get("cached_tokens") \
    if st == 200 else None
R.check("a repeated prompt reuses the KV of the last one, same answer",
        st == 200 and cached == body["usage"]["prompt_tokens"] - 1 and body["text"] == first_text,
        (st, body, first_text))
# an unrelated prompt in between gets a context of its own (the template's
# first tokens are not worth the record they would overwrite)
gen({"prompt": "Something else entirely: " + Q, "max_tokens": 4, "adaptation": {"strategy": "none"}})
st, body, _ = gen({"prompt": Q, "max_tokens": 16, "adaptation": {"strategy": "none"}})
R.check("an unrelated request in between does not evict the cached prompt",
        st == 200 and body["usage"]["prompt_tokens_details"]["cached_tokens"]
        == body["usage"]["prompt_tokens"] - 1 and body["text"] == first_text, (st, body))
# a mixture not materialised yet (4 tokens each, far below materialise_min_tokens): its
# requests share one factored set, so the second reuses the first's prompt KV, same answer
mix = {"strategy": "mixture", "mixture": {"math": 0.45, "reasoning": 0.35}}
st1, b1, _ = gen({"prompt": Q, "max_tokens": 4, "temperature": 0, "adaptation": mix})
st, body, _ = gen({"prompt": Q, "max_tokens": 4, "temperature": 0, "adaptation": mix})
R.check("a factored mixture's repeated prompt reuses the KV of the last one, same answer",
        st1 == 200 and st == 200
        and body["usage"]["prompt_tokens_details"]["cached_tokens"] == body["usage"]["prompt_tokens"] - 1
        and body["text"] == b1["text"], (st1, b1, st, body))
msgs = [{"role": "user", "content": Q}]
st, body, _ = gen({"messages": msgs, "max_tokens": 16, "adaptation": {"expert": "math"}})
ad = body.get("adaptation", {}) if st == 200 else {}
R.check("generate messages + expert", st == 200 and ad.get("strategy") == "expert"
        and ad.get("alpha") == {"math": 1.0} and "pass1_ms" in ad and "pass2_ms" in ad, (st, body))
math_text = body.get("text") if st == 200 else None
st, body, _ = gen({"messages": msgs, "max_tokens": 16})
ad = body.get("adaptation", {}) if st == 200 else {}
R.check("generate default strategy prompt: label + probabilities",
        st == 200 and ad.get("strategy") == "prompt" and ad.get("label") == "math"
        and abs(sum(ad.get("probabilities", {}).values()) - 1) < 1e-3
        and isinstance(ad.get("pass1_tokens"), int), (st, body))
st, body, _ = gen({"messages": msgs, "max_tokens": 16,
                   "adaptation": {"strategy": "mixture", "mixture": {"math": 0.7, "code": 0.3}}})
R.check("generate mixture", st == 200 and body["adaptation"]["alpha"] == {"math": 0.7, "code": 0.3},
        (st, body))
st, body, _ = gen({"messages": msgs, "max_tokens": 16,
                   "adaptation": {"strategy": "classifier", "method": "generate"}})
R.check("generate classifier/generate", st == 200 and body["adaptation"]["strategy"] == "classifier",
        (st, body))
st, body, _ = gen({"prompt": Q, "max_tokens": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.9,
                   "min_p": 0.05, "repetition_penalty": 1.1, "seed": 7, "stop": ["\n", "zz"]})
R.check("generate with every sampling field", st == 200, (st, body))

# errors
st, hdrs, data = S.request("POST", "/v1/generate", body=b"{bad json",
                           headers={"Content-Type": "application/json"})
err_ok("malformed JSON", st, json.loads(data), 400)
st, hdrs, data = S.request("POST", "/v1/generate", body=b"[1]",
                           headers={"Content-Type": "application/json"})
err_ok("JSON not an object", st, json.loads(data), 400)
st, hdrs, data = S.request("POST", "/v1/generate", body=b'{"prompt": "a\xff\xfeb"}',
                           headers={"Content-Type": "application/json"})
err_ok("invalid UTF-8", st, json.loads(data), 400)
st, hdrs, data = S.request("POST", "/v1/generate", body=b'{"prompt": "x"}',
                           headers={"Content-Type": "text/plain"})
err_ok("wrong Content-Type", st, json.loads(data), 415)
# a declared length over the limit is refused from the headers alone (the
# client need not send the body: with Expect: 100-continue it will not)
sock = socket.create_connection((S.host, S.port), timeout=30)
sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: t2\r\nContent-Type: application/json\r\n"
             b"Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
raw = b""
while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
    got = sock.recv(65536)
    if not got:
        break
    raw += got
sock.close()
head, _, payload = raw.partition(b"\r\n\r\n")
err_ok("body over the limit (Content-Length)", int(head.split()[1]), json.loads(payload), 413)


def chunks():
    yield b'{"prompt": "'
    for _ in range(24):
        yield b"a" * 65536
    yield b'"}'


c = S.conn()
c.request("POST", "/v1/generate", body=chunks(), encode_chunked=True,
          headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
r = c.getresponse()
err_ok("body over the limit (chunked)", r.status, json.loads(r.read()), 413)
c.close()
for what, body, param in [
        ("unknown field", {"prompt": "x", "temprature": 0.5}, "temprature"),
        ("unknown adaptation field", {"prompt": "x", "adaptation": {"strategy": "none", "x": 1}},
         "adaptation.x"),
        ("max_tokens too large", {"prompt": "x", "max_tokens": 10 ** 9}, "max_tokens"),
        ("max_tokens wrong type", {"prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ("temperature negative", {"prompt": "x", "temperature": -1}, "temperature"),
        ("top_p zero", {"prompt": "x", "top_p": 0}, "top_p"),
        ("seed negative", {"prompt": "x", "seed": -3}, "seed"),
        ("stream not bool", {"prompt": "x", "stream": "yes"}, "stream"),
        ("too many stops", {"prompt": "x", "stop": ["s%d" % i for i in range(17)]}, "stop"),
        ("empty stop", {"prompt": "x", "stop": [""]}, "stop[0]"),
        ("prompt and messages", {"prompt": "x", "messages": msgs}, "messages"),
        ("neither prompt nor messages", {"max_tokens": 3}, "prompt"),
        ("bad role", {"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ("few_shot strategy", {"prompt": "x", "adaptation": {"strategy": "few_shot"}},
         "adaptation.strategy"),
        ("unknown strategy", {"prompt": "x", "adaptation": {"strategy": "magic"}},
         "adaptation.strategy"),
        ("expert without strategy expert",
         {"prompt": "x", "adaptation": {"strategy": "none", "expert": "math"}}, "adaptation.expert"),
        ("mixture weight not a number",
         {"prompt": "x", "adaptation": {"mixture": {"math": "lots"}}}, "adaptation.mixture.math"),
        ("invalid expert name", {"prompt": "x", "adaptation": {"expert": "../etc"}},
         "adaptation.expert"),
        ("huge number", {"prompt": "x", "temperature": 1e308 * 10}, None)]:
    st, b, _ = gen(body)
    if what == "huge number":  # 1e309 is not representable: malformed or out of range
        R.check("huge number -> 400/422", st in (400, 422), (st, b))
        continue
    err_ok(what, st, b, 422, param)
st, body, _ = gen({"prompt": "x", "adaptation": {"expert": "nope"}})
err_ok("unknown expert", st, body, 404)
st, body, _ = gen({"prompt": "x", "adaptation": {"profile": "nope"}})
err_ok("unknown profile", st, body, 404)
st, hdrs, data = S.request("POST", "/v1/generate", body=b'{"prompt":' + b"[" * 5000 + b"]" * 5000
                           + b"}", headers={"Content-Type": "application/json"})
R.check("deep nesting rejected", st in (400, 422), (st, data[:200]))

# ---------------- streaming ----------------
req = {"messages": msgs, "max_tokens": 24, "adaptation": {"expert": "math"}}
st, _, events = S.stream("/v1/generate", dict(req, stream=True))
names = [e for e, _ in events]
text = "".join(json.loads(d)["text"] for e, d in events if e is None)
done = json.loads(events[-1][1]) if events and events[-1][0] == "done" else {}
R.check("SSE framing: adaptation first, data chunks, done last",
        st == 200 and names and names[0] == "adaptation" and names[-1] == "done"
        and all(n is None for n in names[1:-1]), (st, events))
R.check("SSE done has finish_reason and usage", "finish_reason" in done and "usage" in done, done)
st, body, _ = gen(req)
R.check("streamed text == non-streamed text", st == 200 and text == body["text"] == math_text,
        (text, body, math_text))
long_req = {"prompt": "a", "max_tokens": 120, "temperature": 20, "seed": 2,
            "adaptation": {"strategy": "none"}}
st, _, events = S.stream("/v1/generate", dict(long_req, stream=True))
stext = "".join(json.loads(d)["text"] for e, d in events if e is None)
st2, body, _ = gen(long_req)
R.check("long seeded stream == non-streamed", st == 200 and st2 == 200 and stext == body["text"]
        and len([e for e in events if e[0] is None]) > 5, (len(stext), body.get("text", "")[:80]))
st, _, events = S.stream("/v1/generate", {"prompt": "x", "stream": True,
                                           "adaptation": {"expert": "nope"}})
R.eq("stream with an unknown expert -> 404 before the stream starts", st, 404)

# ---------------- OpenAI-compatible ----------------
oai = {"model": "seedling:math", "messages": msgs, "max_tokens": 16, "temperature": 0,
       "frequency_penalty": 0, "presence_penalty": 0, "user": "u1", "logit_bias": {}}
st, body, _ = S.json("POST", "/v1/chat/completions", oai)
ok = st == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
ok = ok and body["model"] == "seedling:math" and isinstance(body["created"], int)
ok = ok and body["choices"][0]["message"]["role"] == "assistant"
ok = ok and body["choices"][0]["finish_reason"] in ("stop", "length") and "usage" in body
ok = ok and isinstance(body["usage"].get("prompt_tokens_details", {}).get("cached_tokens"), int)
R.check("chat completion object", ok, (st, body))
R.check("chat with model seedling:math == generate with expert math",
        ok and body["choices"][0]["message"]["content"] == math_text, (body, math_text))
st, _, events = S.stream("/v1/chat/completions",
                         dict(oai, stream=True, stream_options={"include_usage": True}))
datas = [d for e, d in events]
chunks_ = [json.loads(d) for d in datas[:-1]]
content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks_ if c["choices"])
R.check("chat stream framing: chunks, finish, usage, [DONE]",
        st == 200 and datas[-1] == "[DONE]" and chunks_[0]["choices"][0]["delta"].get("role")
        == "assistant" and chunks_[-2]["choices"][0]["finish_reason"] in ("stop", "length")
        and chunks_[-1]["choices"] == [] and chunks_[-1]["usage"]["total_tokens"] > 0
        and all(c["object"] == "chat.completion.chunk" for c in chunks_), datas)
R.check("chat stream content == non-streamed", content == math_text, (content, math_text))
st, body, _ = S.json("POST", "/v1/chat/completions", dict(oai, n=2))
err_ok("chat n=2", st, body, 422, "n")
st, body, _ = S.json("POST", "/v1/chat/completions", dict(oai, model="gpt-4"))
err_ok("chat unknown model", st, body, 404, "model")
st, body, _ = S.json("POST", "/v1/chat/completions",
                     {"messages": msgs, "max_completion_tokens": 1})
R.check("max_completion_tokens", st == 200 and body["usage"]["completion_tokens"] <= 1, (st, body))
st, body, _ = S.json("POST", "/v1/completions", {"model": "seedling", "prompt": Q, "max_tokens": 8})
R.check("completion object", st == 200 and body["object"] == "text_completion"
        and body["id"].startswith("cmpl-") and "text" in body["choices"][0], (st, body))
st, _, events = S.stream("/v1/completions", {"prompt": Q, "max_tokens": 8, "stream": True})
ctext = "".join(json.loads(d)["choices"][0]["text"] for e, d in events if d != "[DONE]")
R.check("completion stream == non-streamed", st == 200 and events[-1][1] == "[DONE]"
        and ctext == body["choices"][0]["text"], (ctext, body))
st, body, _ = S.json("POST", "/v1/completions", {"prompt": 5})
err_ok("completion prompt wrong type", st, body, 422, "prompt")

# ---------------- /v1/classify ----------------
st, body, _ = S.json("POST", "/v1/classify", {"prompt": Q})
R.check("classify prompt", st == 200 and body["label"] == "math"
        and set(body["probabilities"]) == {"math", "code", "reasoning", "other"}, (st, body))
first_cached = body.get("pass1_cached_tokens") if st == 200 else None
# the one pass-1 worker (the default) kept the KV of the classification
# prompt: a second question evaluates only what follows its system part
st, body, _ = S.json("POST", "/v1/classify", {"prompt": "What is 7 times 8?"})
R.check("classify reuses the cached system prompt",
        st == 200 and isinstance(first_cached, int) and body["pass1_cached_tokens"] > 10
        and body["pass1_tokens"] > 0, (st, first_cached, body))
st, body, _ = S.json("POST", "/v1/classify", {"messages": msgs, "strategy": "classifier",
                                              "method": "generate"})
R.check("classify classifier/generate", st == 200 and "label" in body, (st, body))
st, body, _ = S.json("POST", "/v1/classify", {"prompt": Q, "strategy": "expert"})
err_ok("classify bad strategy", st, body, 422, "strategy")

# ---------------- experts ----------------
st, body, _ = S.json("GET", "/v1/experts")
R.check("list experts", st == 200 and sorted(e["name"] for e in body["experts"])
        == ["cls", "code", "math", "reasoning"] and all(
            k in body["experts"][0] for k in ("task", "description", "base_model",
                                              "parametrization", "adapted", "file_bytes")),
        (st, body))
R.eq("get expert", S.json("GET", "/v1/experts/math")[0], 200)
err_ok("get unknown expert", *S.json("GET", "/v1/experts/nope")[:2], 404)
err_ok("expert name '..'", *S.json("GET", "/v1/experts/..")[:2], 422)
err_ok("expert name '%2e%2e'", *S.json("GET", "/v1/experts/%2e%2e")[:2], 422)
math_bytes = open(os.path.join(MODEL, "experts", "math.safetensors"), "rb").read()
octet = {"Content-Type": "application/octet-stream"}
before = sorted(os.listdir(S.experts))
st, hdrs, data = S.request("PUT", "/v1/experts/bad", body=b"not a safetensors file", headers=octet)
err_ok("invalid upload", st, json.loads(data), 422)
st, hdrs, data = S.request("PUT", "/v1/experts/bad", body=math_bytes[:-100], headers=octet)
err_ok("truncated upload", st, json.loads(data), 422)
R.eq("directory unchanged after invalid uploads", sorted(os.listdir(S.experts)), before)
st, hdrs, data = S.request("POST", "/v1/experts", body=math_bytes, headers=octet)
err_ok("upload without a name", st, json.loads(data), 422, "name")
st, hdrs, data = S.request("PUT", "/v1/experts/x", body=math_bytes,
                           headers={"Content-Type": "text/plain"})
err_ok("upload with a wrong Content-Type", st, json.loads(data), 415)
st, hdrs, data = S.request("PUT", "/v1/experts/math2", body=math_bytes, headers=octet)
R.check("upload raw -> 201", st == 201 and json.loads(data)["name"] == "math2"
        and hdrs.get("location") == "/v1/experts/math2", (st, data))
st, hdrs, data = S.request("PUT", "/v1/experts/math2", body=math_bytes, headers=octet)
R.eq("upload again -> 200 (replaced)", st, 200)
st, body, _ = S.json("GET", "/v1/experts")
R.check("upload listed", "math2" in [e["name"] for e in body["experts"]], body)
st, body, _ = gen({"messages": msgs, "max_tokens": 16, "adaptation": {"expert": "math2"}})
R.check("generate with the uploaded expert", st == 200 and body["text"] == math_text, (st, body))
st, body, _ = S.json("GET", "/v1/models")
R.check("uploaded expert is a model id", "seedling:math2" in [m["id"] for m in body["data"]], body)
boundary = "----t2boundary7"
mp = ("--%s\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nmath3\r\n"
      "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.safetensors\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n" % (boundary, boundary)).encode() \
    + math_bytes + ("\r\n--%s--\r\n" % boundary).encode()
mph = {"Content-Type": "multipart/form-data; boundary=" + boundary}
st, hdrs, data = S.request("POST", "/v1/experts", body=mp, headers=mph)
R.check("multipart upload -> 201", st == 201 and json.loads(data)["name"] == "math3", (st, data))
st, hdrs, data = S.request("POST", "/v1/experts?name=math4", body=math_bytes, headers=octet)
R.check("upload with ?name=", st == 201 and json.loads(data)["name"] == "math4", (st, data))
st, hdrs, data = S.request("POST", "/v1/experts", body=mp[:-20], headers=mph)
err_ok("malformed multipart", st, json.loads(data), 400)
for name in ("math2", "math3", "math4"):
    st, body, _ = S.json("DELETE", "/v1/experts/" + name)
    R.check("delete " + name, st == 200 and body.get("deleted") is True, (st, body))
err_ok("get deleted expert", *S.json("GET", "/v1/experts/math2")[:2], 404)
err_ok("delete unknown expert", *S.json("DELETE", "/v1/experts/math2")[:2], 404)
R.eq("directory back as it was", sorted(os.listdir(S.experts)), before)

# ---------------- /v1/adapt and profiles ----------------
ex = [{"question": e["question"], "answer": e["answer"]}
      for e in load_jsonl("transfer_fewshot.jsonl", 4)]
st, body, _ = S.json("POST", "/v1/adapt", {"name": "transfer1", "examples": ex,
                                           "generations": 2, "population": 4, "seed": 1})
R.check("adapt -> 201 profile", st == 201 and body["name"] == "transfer1"
        and isinstance(body["alpha"], dict) and "search" in body, (st, body))
st, body, _ = S.json("GET", "/v1/profiles")
R.check("list profiles", st == 200 and [p["name"] for p in body["profiles"]] == ["transfer1"],
        (st, body))
R.eq("get profile", S.json("GET", "/v1/profiles/transfer1")[0], 200)
st, body, _ = gen({"prompt": ex[0]["question"], "max_tokens": 8,
                   "adaptation": {"profile": "transfer1"}})
R.check("generate with the profile", st == 200 and body["adaptation"]["strategy"] == "profile",
        (st, body))
st, body, _ = S.json("GET", "/v1/models")
R.check("profile is a model id", "seedling:profile:transfer1" in [m["id"] for m in body["data"]])
st, body, _ = S.json("POST", "/v1/chat/completions",
                     {"model": "seedling:profile:transfer1", "messages": msgs, "max_tokens": 4})
R.eq("chat with a profile model id", st, 200)
err_ok("adapt without examples", *S.json("POST", "/v1/adapt", {"name": "p"})[:2], 422, "examples")
err_ok("adapt bad name", *S.json("POST", "/v1/adapt", {"name": "a/b", "examples": ex})[:2], 422,
       "name")
st, body, _ = S.json("DELETE", "/v1/profiles/transfer1")
R.check("delete profile", st == 200, (st, body))
err_ok("get deleted profile", *S.json("GET", "/v1/profiles/transfer1")[:2], 404)

# ---------------- metrics and logs ----------------
st, hdrs, data = S.request("GET", "/metrics")
text = data.decode()
R.check("metrics", st == 200 and hdrs.get("content-type", "").startswith("text/plain")
        and 't2_requests_total{endpoint="/v1/generate",status="200"}' in text
        and "t2_queue_depth" in text and "t2_running_sequences" in text
        and "t2_pass1_seconds_bucket" in text and "t2_pass2_seconds_count" in text
        and "t2_experts_loaded 4" in text and "t2_adapted_cache_hits_total" in text
        and "t2_adapted_cache_misses_total" in text, text[:2000])
tok = [line for line in text.splitlines() if line.startswith("t2_tokens_generated_total ")]
R.check("tokens counted", tok and int(tok[0].split()[1]) > 0, tok)
rc = S.stop(cleanup=False)
log = S.log()
R.check("access log lines", "access: POST /v1/generate 200" in log
        and "access: GET /v1/experts 200" in log, log[-2000:])
R.eq("exit status after SIGTERM", rc, 0)
S.stop()
R.finish()
