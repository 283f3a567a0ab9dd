"""API key and CORS configuration of t2 serve.

usage: test_auth.py PATH/TO/t2
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import MODEL, Results, Server, t2_path  # noqa: E402

R = Results("auth")
T2 = t2_path()
math_bytes = open(os.path.join(MODEL, "experts", "math.safetensors"), "rb").read()
OCTET = {"Content-Type": "application/octet-stream"}
GEN = {"prompt": "What is 2 + 3?", "max_tokens": 4}


def bearer(key):
    return {"Authorization": "Bearer " + key}


# key on mutations only (the default), given as a flag
S = Server(T2, "--api-key", "s3cret-KEY", "--cors-admin-origins",
           "https://admin.example, https://ops.example")
st, hdrs, _ = S.request("PUT", "/v1/experts/m2", body=math_bytes, headers=OCTET)
R.check("upload without a key -> 401", st == 401 and hdrs.get("www-authenticate") == "Bearer",
        (st, hdrs))
st, _, _ = S.request("PUT", "/v1/experts/m2", body=math_bytes, headers=dict(OCTET, **bearer("s3cret")))
R.eq("upload with a wrong key -> 401", st, 401)
st, _, _ = S.request("PUT", "/v1/experts/m2", body=math_bytes,
                     headers=dict(OCTET, **bearer("s3cret-KEY-and-more")))
R.eq("upload with a longer key -> 401", st, 401)
st, _, _ = S.request("PUT", "/v1/experts/m2", body=math_bytes,
                     headers=dict(OCTET, Authorization="Basic czNjcmV0LUtFWQ=="))
R.eq("upload with another scheme -> 401", st, 401)
st, _, _ = S.request("PUT", "/v1/experts/m2", body=math_bytes,
                     headers=dict(OCTET, **bearer("s3cret-KEY")))
R.eq("upload with the key -> 201", st, 201)
R.eq("delete without a key -> 401", S.request("DELETE", "/v1/experts/m2")[0], 401)
R.eq("delete with the key -> 200",
     S.request("DELETE", "/v1/experts/m2", headers=bearer("s3cret-KEY"))[0], 200)
R.eq("adapt without a key -> 401",
     S.json("POST", "/v1/adapt", {"name": "p", "examples": []})[0], 401)
R.eq("adapt with the key reaches validation (422)",
     S.json("POST", "/v1/adapt", {"name": "p", "examples": []}, headers=bearer("s3cret-KEY"))[0],
     422)
R.eq("profile delete without a key -> 401", S.request("DELETE", "/v1/profiles/p")[0], 401)
# every mutation, without a key and with a wrong one: 401, and nothing changes
S.request("PUT", "/v1/experts/keep", body=math_bytes, headers=dict(OCTET, **bearer("s3cret-KEY")))
boundary = "k3y"
mp = ("--%s\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nm3\r\n--%s\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"m\"\r\n\r\n"
      % (boundary, boundary)).encode() + math_bytes + ("\r\n--%s--\r\n" % boundary).encode()
MUTATIONS = [("PUT", "/v1/experts/m3", math_bytes, OCTET),
             ("POST", "/v1/experts?name=m3", math_bytes, OCTET),
             ("POST", "/v1/experts", mp,
              {"Content-Type": "multipart/form-data; boundary=" + boundary}),
             ("DELETE", "/v1/experts/keep", None, {}),
             ("POST", "/v1/adapt", b'{"name": "p", "examples": []}',
              {"Content-Type": "application/json"}),
             ("DELETE", "/v1/profiles/p", None, {})]
for method, path, body, hdrs in MUTATIONS:
    for what, extra in [("no key", {}), ("wrong key", bearer("s3cret-KEZ")),
                        ("empty bearer", {"Authorization": "Bearer "}),
                        ("key as Basic", {"Authorization": "Basic s3cret-KEY"})]:
        st, h, data = S.request(method, path, body=body, headers=dict(hdrs, **extra))
        R.check("%s %s with %s -> 401" % (method, path, what),
                st == 401 and h.get("www-authenticate") == "Bearer"
                and b'"authentication_error"' in data, (st, data[:200]))
names = sorted(e["name"] for e in S.json("GET", "/v1/experts")[1]["experts"])
R.eq("refused mutations changed nothing", names, ["cls", "code", "keep", "math", "reasoning"])
R.eq("generate needs no key", S.json("POST", "/v1/generate", GEN)[0], 200)
R.eq("listing experts needs no key", S.request("GET", "/v1/experts")[0], 200)
st, hdrs, _ = S.request("OPTIONS", "/v1/experts/m2", headers={
    "Origin": "https://ops.example", "Access-Control-Request-Method": "PUT"})
R.check("admin origin allowed by configuration",
        st == 204 and hdrs.get("access-control-allow-origin") == "https://ops.example"
        and "PUT" in hdrs.get("access-control-allow-methods", "")
        and "Origin" in hdrs.get("vary", ""), (st, hdrs))
st, hdrs, _ = S.request("OPTIONS", "/v1/experts/m2", headers={
    "Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
R.check("other origin not allowed", "access-control-allow-origin" not in hdrs, hdrs)
R.eq("stopped cleanly", S.stop(), 0)

# key on every endpoint, from the environment
S = Server(T2, env={"T2_API_KEY": "k2", "T2_API_KEY_ALL": "true"})
R.eq("all: generate without a key -> 401", S.json("POST", "/v1/generate", GEN)[0], 401)
R.eq("all: models without a key -> 401", S.request("GET", "/v1/models")[0], 401)
R.eq("all: generate with the key", S.json("POST", "/v1/generate", GEN, headers=bearer("k2"))[0],
     200)
st, body, _ = S.json("POST", "/v1/chat/completions",
                     {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                     headers=bearer("k2"))
R.eq("all: chat with the key (as the OpenAI SDKs send it)", st, 200)
R.eq("all: /health stays open", S.request("GET", "/health")[0], 200)
R.eq("all: /ready stays open", S.request("GET", "/ready")[0], 200)
R.eq("all: preflight needs no key", S.request("OPTIONS", "/v1/generate", headers={
    "Origin": "https://x.example", "Access-Control-Request-Method": "POST"})[0], 204)
R.eq("stopped cleanly", S.stop(), 0)
R.finish()
