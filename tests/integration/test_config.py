"""Configuration of t2 serve: invalid values exit 2 naming the key and the
source; precedence flags > environment > file > defaults; --help; the
example config file parses.

usage: test_config.py PATH/TO/t2
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import MODEL, Results, Server, t2_path  # noqa: E402

R = Results("config")
T2 = t2_path()
TMP = tempfile.mkdtemp(prefix="t2conf-")
SRC = os.environ.get("T2_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")


def run(args, env=None, cwd=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("T2_") or k == "T2_SHARED"}
    e.update(env or {})
    p = subprocess.run([T2, "serve"] + args, env=e, cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


rc, out, err = run(["--help"])
R.check("--help", rc == 0 and "--max-body" in out and "--cors-origins" in out, (rc, out[:200]))
rc, out, err = run(["--port", "abc"])
R.check("bad flag value -> 2 naming key and flag", rc == 2 and "port" in err and "flag --port" in err,
        (rc, err))
rc, out, err = run([], env={"T2_PORT": "70000"})
R.check("bad env value -> 2 naming the variable", rc == 2 and "environment T2_PORT" in err,
        (rc, err))
cfg = write("bad.conf", "# comment\nhost = 127.0.0.1\nmax_tokens = lots\n")
rc, out, err = run(["--config", cfg])
R.check("bad file value -> 2 naming file and line", rc == 2 and "max_tokens" in err
        and "bad.conf:3" in err, (rc, err))
cfg2 = write("typo.conf", "prot = 8080\n")
rc, out, err = run(["--config", cfg2])
R.check("unknown key in the file -> 2", rc == 2 and "unknown key 'prot'" in err, (rc, err))
rc, out, err = run(["--bogus", "1"])
R.check("unknown flag -> 2", rc == 2 and "--bogus" in err, (rc, err))
rc, out, err = run(["--default-strategy", "expert:../x"])
R.check("bad strategy -> 2", rc == 2 and "default_strategy" in err, (rc, err))
rc, out, err = run(["--config", os.path.join(TMP, "missing.conf")])
R.check("missing config file -> 2", rc == 2 and "missing.conf" in err, (rc, err))
rc, out, err = run(["--model", os.path.join(TMP, "nope"), "--port", "0"])
R.check("unloadable model -> 1 with a message", rc == 1 and "cannot load the model" in err,
        (rc, err[-500:]))

# precedence: the file says json, the environment text, a flag json again
cfg3 = write("fmt.conf", 'log_format = json\nclassify_prompt = "Pick one of {labels}.\\n"\n')
S = Server(T2, "--config", cfg3, env={"T2_LOG_FORMAT": "text"}, ready=False)
R.check("environment beats the file", "t2: listening on" in S.log(), S.log()[:300])
S.stop()
S = Server(T2, "--config", cfg3, "--log-format", "json", env={"T2_LOG_FORMAT": "text"})
lines = [json.loads(line) for line in S.log().splitlines() if line.startswith("{")]
R.check("flag beats the environment (JSON lines)",
        lines and any("listening on http://" in x["msg"] for x in lines)
        and all({"time", "level", "msg"} <= set(x) for x in lines), S.log()[:500])
S.json("GET", "/health")
S.stop(cleanup=False)
acc = [json.loads(line) for line in S.log().splitlines()
       if line.startswith("{") and '"access"' in line]
R.check("JSON access line", acc and acc[-1]["path"] == "/health" and acc[-1]["status"] == 200
        and "ms" in acc[-1] and "tokens" in acc[-1], acc)
S.stop()

# the request time limit: a long generation ends with finish_reason "timeout"
# (seedling decodes 450 tokens in ~0.25 s on a fast core: the limit is far below)
S = Server(T2, "--timeout", "0.05")
st, body, _ = S.json("POST", "/v1/generate", {"prompt": "a", "max_tokens": 450, "temperature": 20,
                                              "seed": 2, "adaptation": {"strategy": "none"}})
R.check("timeout -> finish_reason timeout", st == 200 and body["finish_reason"] == "timeout"
        and body["usage"]["completion_tokens"] < 450, (st, body))
R.eq("stopped cleanly", S.stop(), 0)

# an f16 K/V cache: logged at load, greedy answers as with f32 (seedling's
# logits move by ~5e-4, far from any argmax tie in these prompts)
prompts = ["What is 461 + 129?", "Write a Python function that reverses a list.",
           "If all cats are animals and Tom is a cat, is Tom an animal?"]


def greedy(server):
    out = []
    for p in prompts:
        st, body, _ = server.json("POST", "/v1/generate", {
            "prompt": p, "max_tokens": 24, "temperature": 0, "adaptation": {"strategy": "none"}})
        out.append(body.get("text") if st == 200 else (st, body))
    return out


S = Server(T2)
f32_text = greedy(S)
R.check("f32 cache: three answers", all(isinstance(t, str) and t for t in f32_text), f32_text)
S.stop()
S = Server(T2, "--kv-cache", "f16")
R.check("--kv-cache f16 is logged", "K/V cache f16" in S.log(), S.log()[-600:])
R.eq("--kv-cache f16: greedy text as with f32", greedy(S), f32_text)
R.eq("stopped cleanly", S.stop(), 0)
rc, out, err = run(["--kv-cache", "q4"])
R.check("bad --kv-cache -> 2 naming the key", rc == 2 and "kv_cache" in err, (rc, err))

# materialise_min_tokens: a mixture not in the cache runs factored until that many tokens
# were generated with it (over all its requests), then is built in the background and
# cached; the build shows in /metrics as a cached set and in t2_adapted_builds_total
def mixture_sets(server, weight):
    # 40 tokens exactly: repetition_penalty keeps the chat's end of turn, which the
    # prompt holds, away (bench/load.py)
    st, body, _ = server.json("POST", "/v1/generate", {
        "messages": [{"role": "user", "content": prompts[0]}], "max_tokens": 40,
        "temperature": 0, "repetition_penalty": 100,
        "adaptation": {"strategy": "mixture", "mixture": {"math": weight, "code": 0.5}}})
    sets = builds = None
    for _ in range(100):  # the build finishes after the request, in the background
        text = server.request("GET", "/metrics")[2].decode()
        sets = [ln for ln in text.splitlines() if ln.startswith("t2_adapted_cache_sets ")]
        builds = [ln for ln in text.splitlines() if ln.startswith("t2_adapted_builds_total ")]
        if sets and sets[0] != "t2_adapted_cache_sets 0" and builds and \
                builds[0] != "t2_adapted_builds_total 0":
            break
        time.sleep(0.05)
    tokens = body.get("usage", {}).get("completion_tokens") if st == 200 else None
    return (st, tokens, sets[0].split()[1] if sets else None,
            builds[0].split()[1] if builds else None)


S = Server(T2)
R.eq("40 tokens on a new mixture (default 64): nothing built",
     mixture_sets(S, 0.6), (200, 40, "0", "0"))
R.eq("stopped cleanly", S.stop(), 0)
S = Server(T2, "--materialise-min-tokens", "60")
R.eq("--materialise-min-tokens 60: a first 40 tokens on a new mixture build nothing",
     mixture_sets(S, 0.6), (200, 40, "0", "0"))
R.eq("--materialise-min-tokens 60: a second request on it (80 tokens in all) builds it",
     mixture_sets(S, 0.6), (200, 40, "1", "1"))
R.eq("stopped cleanly", S.stop(), 0)
S = Server(T2, "--materialise-min-tokens", "30")
R.eq("--materialise-min-tokens 30: 40 tokens on a new mixture build it during the request",
     mixture_sets(S, 0.7), (200, 40, "1", "1"))
R.eq("stopped cleanly", S.stop(), 0)
# a set larger than the cache would be built again for every job: none is built
S = Server(T2, "--materialise-min-tokens", "1", "--adapted-cache-mb", "10")
R.eq("--adapted-cache-mb 10 (a seedling set is 18 MB): 40 tokens on a new mixture, nothing cached",
     mixture_sets(S, 0.8), (200, 40, "0", "0"))
R.eq("stopped cleanly", S.stop(cleanup=False), 0)
with open(S.log_path) as f:
    log = f.read()
R.check("the log says mixtures stay factored",
        "does not fit adapted_cache_mb (10 MB): t2 serve runs mixtures on their factored form" in log,
        log[-400:])
shutil.rmtree(S.tmp, ignore_errors=True)
rc, out, err = run(["--materialise-min-tokens", "0"])
R.check("bad --materialise-min-tokens -> 2 naming the key",
        rc == 2 and "materialise_min_tokens" in err, (rc, err))

# the documented example parses and serves
example = os.path.join(SRC, "conf", "t2.conf.example")
S = Server(T2, "--config", example, "--model", MODEL)
R.eq("example config serves", S.json("GET", "/ready")[0], 200)
R.eq("stopped cleanly", S.stop(), 0)
R.finish()
