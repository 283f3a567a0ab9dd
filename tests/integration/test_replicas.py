"""Two t2 processes sharing one experts directory (as replicas behind a load
balancer do): an expert uploaded or deleted through one becomes visible to
the other within its rescan period; a profile stored by one is read by the
other at once (profiles are read from disk per request).

usage: test_replicas.py PATH/TO/t2
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import MODEL, Results, Server, expert_names, t2_path  # noqa: E402

R = Results("replicas")
T2 = t2_path()
math_bytes = open(os.path.join(MODEL, "experts", "math.safetensors"), "rb").read()
OCTET = {"Content-Type": "application/octet-stream"}
Q = {"messages": [{"role": "user", "content": "What is 461 + 129?"}], "max_tokens": 8}


def wait_for(pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


A = Server(T2, "--experts-rescan", "0.5", "--default-strategy", "none")
B = Server(T2, "--experts-rescan", "0.5", "--default-strategy", "none", keep_tmp=A.tmp)
R.check("both replicas start with the same experts", expert_names(A) == expert_names(B) and expert_names(A), (expert_names(A), expert_names(B)))

st, _, _ = A.request("PUT", "/v1/experts/shared1", body=math_bytes, headers=OCTET)
R.eq("upload through replica A", st, 201)
R.check("replica B sees the upload within the rescan period",
        wait_for(lambda: "shared1" in (expert_names(B) or [])), expert_names(B))
st, body, _ = B.json("POST", "/v1/generate",
                  dict(Q, adaptation={"strategy": "expert", "expert": "shared1"}))
R.check("replica B generates with it (math expert: 680)", st == 200 and body.get("text") == "680",
        (st, body))

st, _, _ = A.request("DELETE", "/v1/experts/shared1")
R.eq("delete through replica A", st, 200)
R.check("replica B drops it within the rescan period",
        wait_for(lambda: "shared1" not in (expert_names(B) or ["shared1"])), expert_names(B))
st, body, _ = B.json("POST", "/v1/generate", dict(Q, adaptation={"strategy": "expert", "expert": "shared1"}))
R.eq("generating with the deleted expert on B -> 404", st, 404)

# profiles are read from the shared directory per request: visible at once
EX = [{"question": "What is 39 - 33?\nA. -4\nB. 6\nC. 5", "answer": "B"}]
st, body, _ = A.json("POST", "/v1/adapt", {"name": "shared-prof", "examples": EX,
                                          "generations": 1, "population": 2, "seed": 1})
R.eq("profile created through replica A", st, 201)
st, pb, _ = B.json("GET", "/v1/profiles/shared-prof")
R.check("replica B reads it at once, same alpha", st == 200 and pb.get("alpha") == body.get("alpha"),
        (st, pb, body))
st, gen, _ = B.json("POST", "/v1/generate", dict(Q, adaptation={"strategy": "profile", "profile": "shared-prof"}))
R.eq("replica B generates with it", st, 200)
st, _, _ = B.request("DELETE", "/v1/profiles/shared-prof")
R.eq("profile deleted through replica B", st, 200)
st, _, _ = A.request("GET", "/v1/profiles/shared-prof")
R.eq("replica A no longer has it", st, 404)

R.eq("replica B exits 0 on SIGTERM", B.stop(cleanup=False), 0)
R.eq("replica A exits 0 on SIGTERM", A.stop(), 0)
R.finish()
