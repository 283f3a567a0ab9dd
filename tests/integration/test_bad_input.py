"""Bad input on every endpoint that takes a body: each is a clean 4xx with
the JSON error object, and the server goes on serving.

Oversized bodies (Content-Length and chunked) -> 413, not JSON / deeply
nested / huge numbers / invalid UTF-8 (raw bytes, lone surrogate escapes,
\\u0000) / duplicate keys -> 400, wrong types, out-of-range values,
max_tokens beyond the context, negative temperature, prompts longer than
the context -> 422. Unknown fields: t2's own endpoints reject them (422
unknown_field), the OpenAI-compatible ones ignore them (docs/API.md).
Expert uploads: garbage, empty, truncated, wrong Content-Type, malformed
multipart, JSON sent as an upload. HTTP framing errors (bad
Content-Length, bad chunk size, header too large) are answered by
libmicrohttpd itself before t2 sees the request: the status is checked
(its body is libmicrohttpd's HTML).

usage: test_bad_input.py PATH/TO/t2
"""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import MODEL, Results, Server, t2_path  # noqa: E402

R = Results("bad_input")
S = Server(t2_path(), "--max-body", "1")  # 1 MB: oversized bodies stay cheap
JSON_H = {"Content-Type": "application/json"}
CTX = 512  # seedling's max_position_embeddings: the context per sequence
EX = [{"question": "What is 1 + 1?", "answer": "2"}]

# a valid body for each endpoint; the cases below change one thing in it
VALID = {
    "/v1/generate": {"prompt": "What is 2 + 3?", "max_tokens": 2,
                     "adaptation": {"strategy": "none"}},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    "/v1/completions": {"prompt": "What is 2 + 3?", "max_tokens": 2},
    "/v1/classify": {"prompt": "What is 2 + 3?"},
    "/v1/adapt": {"name": "badin", "examples": EX, "generations": 1, "population": 2},
}
T2_OWN = ("/v1/generate", "/v1/classify", "/v1/adapt")
GENERATING = ("/v1/generate", "/v1/chat/completions", "/v1/completions")


def error_shape(body):
    """The documented error object: {"error": {message, type, code, param}}."""
    try:
        e = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(e.get("message"), str) and e["message"] != "" and \
        isinstance(e.get("type"), str) and isinstance(e.get("code"), str) and "param" in e


def expect(what, status, body, want, code=None, param="-"):
    ok = status in (want if isinstance(want, tuple) else (want,)) and error_shape(body)
    if ok and code is not None:
        ok = json.loads(body)["error"]["code"] == code
    if ok and param != "-":
        ok = json.loads(body)["error"]["param"] == param
    R.check("%s -> %s" % (what, want), ok, "got %d %r" % (status, body[:300]))


def post_raw(path, data, headers=JSON_H):
    st, _, body = S.request("POST", path, body=data, headers=headers)
    return st, body


def raw_exchange(data, timeout=10):
    """Sends raw bytes, returns the response bytes (until close or timeout)."""
    sock = socket.create_connection((S.host, S.port), timeout=timeout)
    out = b""
    try:
        sock.sendall(data)
        while True:
            got = sock.recv(65536)
            if not got:
                break
            out += got
            head, sep, rest = out.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    break
    except socket.timeout:
        pass
    finally:
        sock.close()
    return out


def post_oversized(path, data, ctype):
    """A body over max_body sent whole: t2 answers 413 from the headers and
    closes without reading it, so the client's send may fail (EPIPE/reset);
    the answer is read anyway, as curl does."""
    sock = socket.create_connection((S.host, S.port), timeout=30)
    out = b""
    try:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: t2\r\nContent-Type: %s\r\n"
                     b"Content-Length: %d\r\n\r\n" % (path.encode(), ctype.encode(), len(data)))
        try:
            sock.sendall(data)
        except OSError:
            pass
        while True:
            got = sock.recv(65536)
            if not got:
                break
            out += got
    except OSError:
        pass
    finally:
        sock.close()
    head, _, body = out.partition(b"\r\n\r\n")
    return status_of(head) or 0, body


def status_of(raw):
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


# ---------------- every JSON endpoint ----------------
for ep, valid in VALID.items():
    st, body = post_raw(ep, json.dumps(valid).encode())
    R.check("%s: the valid body is accepted" % ep, st in (200, 201), (st, body[:300]))

    # oversized: refused from Content-Length before the body is read, and
    # while reading a chunked body
    big = b'{"prompt": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    expect(ep + " oversized (Content-Length)", *post_oversized(ep, big, "application/json"), 413,
           "body_too_large")

    def chunks():
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"}'
    c = S.conn()
    c.request("POST", ep, body=chunks(), encode_chunked=True,
              headers=dict(JSON_H, **{"Transfer-Encoding": "chunked"}))
    r = c.getresponse()
    expect(ep + " oversized (chunked)", r.status, r.read(), 413, "body_too_large")
    c.close()

    for what, data in [
            ("empty body", b""),
            ("not JSON", b"{nope"),
            ("not an object", b'["prompt"]'),
            ("a bare string", b'"prompt"'),
            ("trailing garbage", json.dumps(valid).encode() + b" x"),
            ("duplicate keys", b'{"prompt": "a", "prompt": "b"}'),
            ("deep arrays (100000)", b'{"prompt": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
            ("deep objects (3000)", b'{"x": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}"),
            ("huge integer", b'{"max_tokens": 123456789012345678901234567890}'),
            ("huge real", b'{"temperature": 1e400}'),
            ("NaN", b'{"temperature": NaN}'),
            ("Infinity", b'{"temperature": Infinity}'),
            ("invalid UTF-8 (raw bytes)", b'{"prompt": "a\xc3\x28b"}'),
            ("invalid UTF-8 (overlong)", b'{"prompt": "\xc0\xaf"}'),
            ("invalid UTF-8 (surrogate bytes)", b'{"messages": [{"role": "user", '
             b'"content": "\xed\xa0\x80"}]}'),
            ("lone surrogate escape", b'{"prompt": "a\\ud800b"}'),
            ("NUL escape", b'{"prompt": "a\\u0000b"}')]:
        expect("%s %s" % (ep, what), *post_raw(ep, data), 400, "invalid_json")
    expect(ep + " wrong Content-Type", *post_raw(ep, json.dumps(valid).encode(),
                                                 {"Content-Type": "text/plain"}), 415)

    # unknown fields: rejected by t2's endpoints, ignored by OpenAI's
    body = dict(valid, bogus_field=1)
    st, data = post_raw(ep, json.dumps(body).encode())
    if ep in T2_OWN:
        expect(ep + " unknown field", st, data, 422, "unknown_field", "bogus_field")
    else:
        R.check(ep + " unknown field ignored (OpenAI-compatible)", st == 200, (st, data[:300]))

# wrong types and out-of-range values, per endpoint
CASES = {
    "/v1/generate": [
        ("prompt a number", {"prompt": 5}, "prompt"),
        ("messages a string", {"messages": "hi", "prompt": None}, "messages"),
        ("message content a number", {"prompt": None,
                                      "messages": [{"role": "user", "content": 3}]}, None),
        ("max_tokens a string", {"max_tokens": "5"}, "max_tokens"),
        ("max_tokens a real", {"max_tokens": 2.5}, "max_tokens"),
        ("max_tokens zero", {"max_tokens": 0}, "max_tokens"),
        ("max_tokens beyond the context", {"max_tokens": CTX + 1}, "max_tokens"),
        ("max_tokens 4096 beyond the context", {"max_tokens": 4096}, "max_tokens"),
        ("temperature negative", {"temperature": -0.5}, "temperature"),
        ("temperature a string", {"temperature": "hot"}, "temperature"),
        ("top_p above 1", {"top_p": 1.5}, "top_p"),
        ("top_k negative", {"top_k": -1}, "top_k"),
        ("seed huge negative", {"seed": -9223372036854775808}, "seed"),
        ("stream a number", {"stream": 1}, "stream"),
        ("stop a number", {"stop": 7}, "stop"),
        ("adaptation a list", {"adaptation": []}, "adaptation"),
        ("mixture weight too large",
         {"adaptation": {"mixture": {"math": 1e300}}}, "adaptation.mixture.math")],
    "/v1/chat/completions": [
        ("messages a string", {"messages": "hi"}, "messages"),
        ("messages empty", {"messages": []}, "messages"),
        ("max_tokens beyond the context", {"max_tokens": CTX + 1}, "max_tokens"),
        ("max_completion_tokens beyond the context", {"max_completion_tokens": 100000},
         "max_completion_tokens"),
        ("temperature negative", {"temperature": -1}, "temperature"),
        ("n a string", {"n": "1"}, "n"),
        ("model a number", {"model": 5}, "model")],
    "/v1/completions": [
        ("prompt a number", {"prompt": 5}, "prompt"),
        ("prompt an array of two", {"prompt": ["a", "b"]}, "prompt"),
        ("max_tokens beyond the context", {"max_tokens": 4096}, "max_tokens"),
        ("temperature negative", {"temperature": -0.01}, "temperature"),
        ("best_of 2", {"best_of": 2}, "best_of")],
    "/v1/classify": [
        ("prompt a list", {"prompt": ["x"]}, "prompt"),
        ("strategy a number", {"strategy": 1}, "strategy"),
        ("method unknown", {"method": "guess"}, "method")],
    "/v1/adapt": [
        ("name a number", {"name": 5}, "name"),
        ("examples an object", {"examples": {"q": "a"}}, "examples"),
        ("example without an answer", {"examples": [{"question": "q"}]}, None),
        ("generations zero", {"generations": 0}, "generations"),
        ("generations huge", {"generations": 10 ** 15}, "generations"),
        ("population a string", {"population": "many"}, "population"),
        ("experts a string", {"experts": "math"}, "experts")],
}
for ep, cases in CASES.items():
    for what, change, param in cases:
        body = dict(VALID[ep], **change)
        body = {k: v for k, v in body.items() if v is not None}
        expect("%s %s" % (ep, what), *post_raw(ep, json.dumps(body).encode()), 422,
               None, param if param else "-")

# prompts longer than the context
long_text = "a b c d " * 400
expect("generate: prompt longer than the context",
       *post_raw("/v1/generate", json.dumps({"prompt": long_text, "max_tokens": 2}).encode()), 422)
expect("chat: prompt longer than the context",
       *post_raw("/v1/chat/completions", json.dumps(
           {"messages": [{"role": "user", "content": long_text}], "max_tokens": 2}).encode()), 422)
st, data = post_raw("/v1/generate", json.dumps({"prompt": long_text, "max_tokens": 2,
                                                "stream": True}).encode())
expect("streamed generate: prompt longer than the context (before the stream)", st, data, 422)
# the largest max_tokens that fits is accepted (and stops at the context)
st, data = post_raw("/v1/generate", json.dumps({"prompt": "a", "max_tokens": CTX,
                                                "adaptation": {"strategy": "none"}}).encode())
R.check("max_tokens == the context is accepted", st == 200
        and json.loads(data)["finish_reason"] in ("stop", "length"), (st, data[:300]))

# ---------------- expert uploads ----------------
math_bytes = open(os.path.join(MODEL, "experts", "math.safetensors"), "rb").read()
OCTET = {"Content-Type": "application/octet-stream"}
before = sorted(os.listdir(S.experts))
for path in ("/v1/experts/upx", "/v1/experts?name=upx"):
    method = "PUT" if path.endswith("/upx") else "POST"

    def up(data, headers=OCTET):
        st, _, body = S.request(method, path, body=data, headers=headers)
        return st, body
    expect("%s %s garbage" % (method, path), *up(b"\x00garbage" * 100), 422, "invalid_expert")
    expect("%s %s empty" % (method, path), *up(b""), 422, "invalid_expert")
    expect("%s %s truncated" % (method, path), *up(math_bytes[: len(math_bytes) // 2]), 422,
           "invalid_expert")
    header_len = int.from_bytes(math_bytes[:8], "little")
    expect("%s %s header length beyond the file" % (method, path),
           *up((10 ** 12).to_bytes(8, "little") + math_bytes[8:]), 422, "invalid_expert")
    expect("%s %s header not JSON" % (method, path),
           *up(math_bytes[:8] + b"!" * header_len + math_bytes[8 + header_len:]), 422,
           "invalid_expert")
    expect("%s %s JSON Content-Type" % (method, path),
           *up(b'{"a": 1}', JSON_H), 415, "unsupported_media_type")
    if method == "PUT":
        st, body = S.request("PUT", path, headers=dict(OCTET, **{"Content-Length": "1048577",
                                                                  "Expect": "100-continue"}))[::2]
        expect("PUT oversized (Expect: 100-continue, no body sent)", st, body, 413)
    else:
        expect("%s %s oversized" % (method, path),
               *post_oversized(path, b"\x00" * (1024 * 1024 + 1), "application/octet-stream"),
               413, "body_too_large")
    boundary = "b0undary"
    mph = {"Content-Type": "multipart/form-data; boundary=" + boundary}
    expect("%s %s multipart without a closing boundary" % (method, path),
           *up(("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m\"\r\n\r\n"
                % boundary).encode() + math_bytes, mph), 400, "invalid_multipart")
    expect("%s %s multipart without a boundary parameter" % (method, path),
           *up(b"--x\r\n\r\n--x--\r\n", {"Content-Type": "multipart/form-data"}), 400)
    expect("%s %s multipart without a file part" % (method, path),
           *up(("--%s\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--%s--\r\n"
                % (boundary, boundary)).encode(), mph), 422, "missing_field")
R.eq("experts directory unchanged after the bad uploads", sorted(os.listdir(S.experts)), before)
st, body, _ = S.json("GET", "/v1/experts")
R.eq("expert list unchanged", sorted(e["name"] for e in body["experts"]),
     ["cls", "code", "math", "reasoning"])

# ---------------- HTTP framing (answered by libmicrohttpd) ----------------
for what, data, want in [
        ("Content-Length not a number", b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n"
         b"Content-Length: abc\r\n\r\n{}", 400),
        ("Content-Length negative", b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n"
         b"Content-Length: -5\r\n\r\n{}", 400),
        ("Content-Length beyond 64 bits", b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n"
         b"Content-Length: 99999999999999999999999\r\n\r\n{}", 413),
        ("bad chunk size", b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n"
         b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nab\r\n0\r\n\r\n", 400),
        ("header of 100 KB", b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100000
         + b"\r\n\r\n", 431),
        ("URL of 100 KB", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)]:
    got = raw_exchange(data)
    R.check("%s -> %d" % (what, want), status_of(got) == want, got[:200])

# request smuggling: an ambiguous body end is refused by t2 itself (JSON error)
for what, data in [
        ("two different Content-Length headers", b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n"
         b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"),
        ("Content-Length and Transfer-Encoding", b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n"
         b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")]:
    got = raw_exchange(data)
    R.check("%s -> 400 invalid_framing" % what,
            status_of(got) == 400 and b'"invalid_framing"' in got, got[:300])
got = raw_exchange(b"POST /v1/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
R.check("two equal Content-Length headers are accepted (422: no prompt)", status_of(got) == 422,
        got[:300])

# ---------------- still serving ----------------
st, body, _ = S.json("POST", "/v1/generate", VALID["/v1/generate"])
R.check("generate still works after all of that", st == 200 and isinstance(body.get("text"), str),
        (st, body))
st, _, data = S.request("GET", "/metrics")
running = [line for line in data.decode().splitlines()
           if line.startswith(("t2_running_sequences ", "t2_queue_depth "))]
R.check("nothing left running or queued", st == 200 and len(running) == 2
        and all(line.split()[1] == "0" for line in running), running)
R.eq("stopped cleanly", S.stop(), 0)
R.finish()
