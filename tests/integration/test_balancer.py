"""Two t2 replicas behind nginx (docker/nginx.conf, the file the compose
setup ships, with the addresses rewritten to loopback), all started here:

- both replicas share one experts directory and one SVD cache: exactly one
  of them decomposes, the other loads the factors it wrote;
- an expert uploaded through the balancer is used by both replicas directly;
  deleted through the balancer, it is gone on both;
- docker/nginx-affinity.conf sends every request with one X-T2-Route key to
  one replica, and spreads requests without one;
- under load through the balancer, one replica is killed (SIGKILL): requests
  in flight on it may fail, every request started after the kill succeeds
  through the other.

usage: test_balancer.py PATH/TO/t2   (skipped, exit 77, without nginx)
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import MODEL, Results, Server, expert_names, http_request, t2_path, _die_with_parent  # noqa: E402

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
if not NGINX:
    print("nginx not installed (tools/install-deps.sh installs it): skipped")
    sys.exit(77)

R = Results("balancer")
T2 = t2_path()
SRC = os.path.join(os.path.dirname(__file__), "..", "..")
OCTET = {"Content-Type": "application/octet-stream"}
Q = {"messages": [{"role": "user", "content": "What is 461 + 129?"}], "max_tokens": 8}
math_bytes = open(os.path.join(MODEL, "experts", "math.safetensors"), "rb").read()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nginx_conf(tmp, port, upstreams, name):
    """docker/<name> with loopback addresses and temp paths in tmp."""
    conf = open(os.path.join(SRC, "docker", name)).read()
    conf = conf.replace("server t2-a:8080", "server 127.0.0.1:%d" % upstreams[0])
    conf = conf.replace("server t2-b:8080", "server 127.0.0.1:%d" % upstreams[1])
    conf = conf.replace("listen 8080;", "listen 127.0.0.1:%d;" % port)
    if "8080" in conf or "listen 127.0.0.1" not in conf:
        raise RuntimeError("docker/%s changed shape: update test_balancer.py" % name)
    paths = "".join("    %s_temp_path %s/%s;\n" % (k, tmp, k)
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {\n", "http {\n    access_log %s/access.log;\n%s" % (tmp, paths), 1)
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


class Nginx:
    def __init__(self, upstreams, name="nginx.conf"):
        self.tmp = tempfile.mkdtemp(prefix="t2lb-")
        os.chmod(self.tmp, 0o755)  # nginx's workers drop root: they must reach the temp paths
        self.port = free_port()
        conf = nginx_conf(self.tmp, self.port, upstreams, name)
        glob = "daemon off; pid %s/nginx.pid; error_log %s/error.log;" % (self.tmp, self.tmp)
        self.proc = subprocess.Popen([NGINX, "-p", self.tmp, "-c", conf, "-g", glob],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        end = time.time() + 10
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + self.error_log())

    def error_log(self):
        try:
            return open(os.path.join(self.tmp, "error.log")).read()
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=60):
        """-> (status, body bytes)"""
        st, _, data = http_request("127.0.0.1", self.port, method, path, body, headers, timeout)
        return st, data

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def svd_line(server):
    m = re.search(r"SVF factors for \d+ matrices \(\w+\): (\d+) decomposed, (\d+) from cache", server.log())
    return (int(m.group(1)), int(m.group(2))) if m else None


def requests_served(server):
    st, _, data = server.request("GET", "/metrics")
    total = 0
    for line in data.decode().splitlines():
        m = re.match(r't2_requests_total\{endpoint="/v1/generate",status="200"\} (\d+)', line)
        if m:
            total += int(m.group(1))
    return total


# --- two replicas sharing experts and SVD cache, started together ---
shared = tempfile.mkdtemp(prefix="t2shared-")
cache = os.path.join(shared, "svd-cache")
common = ("--experts-rescan", "0.5", "--default-strategy", "none", "--svd-cache", cache)
A = Server(T2, *common, keep_tmp=shared, ready=False)
B = Server(T2, *common, keep_tmp=shared, ready=False)
A.wait_ready(120)
B.wait_ready(120)
got = sorted([svd_line(A), svd_line(B)], key=lambda x: x or (0, 0))
R.eq("shared SVD cache: one replica decomposed, the other loaded its file", got, [(0, 24), (24, 0)])

lb = Nginx([A.port, B.port])

# --- shared experts through the balancer ---
st, _ = lb.request("PUT", "/v1/experts/lbmath", body=math_bytes, headers=OCTET)
R.eq("upload through nginx", st, 201)
end = time.time() + 10
while time.time() < end and not all("lbmath" in (expert_names(s) or []) for s in (A, B)):
    time.sleep(0.2)
for label, s in (("A", A), ("B", B)):
    st, body, _ = s.json("POST", "/v1/generate", dict(Q, adaptation={"strategy": "expert", "expert": "lbmath"}))
    R.check("replica %s generates with the uploaded expert (math: 680)" % label,
            st == 200 and body.get("text") == "680", (st, body))
st, _ = lb.request("DELETE", "/v1/experts/lbmath")
R.eq("delete through nginx", st, 200)
end = time.time() + 10
while time.time() < end and any("lbmath" in (expert_names(s) or ["lbmath"]) for s in (A, B)):
    time.sleep(0.2)
for label, s in (("A", A), ("B", B)):
    R.check("replica %s no longer lists it" % label, "lbmath" not in (expert_names(s) or ["lbmath"]), expert_names(s))
    st, _, _ = s.json("POST", "/v1/generate", dict(Q, adaptation={"strategy": "expert", "expert": "lbmath"}))
    R.eq("replica %s: generating with it -> 404" % label, st, 404)

# --- expert affinity (docker/nginx-affinity.conf): one route key, one replica ---
aff = Nginx([A.port, B.port], "nginx-affinity.conf")
for key in ("expert:math", "expert:code", "profile:support"):
    before = (requests_served(A), requests_served(B))
    for _ in range(6):
        st, _ = aff.request("POST", "/v1/generate", dict(Q, adaptation={"strategy": "none"}),
                            headers={"Content-Type": "application/json", "X-T2-Route": key})
    delta = (requests_served(A) - before[0], requests_served(B) - before[1])
    R.check("affinity: the 6 requests routed %r all went to one replica" % key,
            sorted(delta) == [0, 6], delta)
before = (requests_served(A), requests_served(B))
for _ in range(8):
    aff.request("POST", "/v1/generate", dict(Q, adaptation={"strategy": "none"}))
delta = (requests_served(A) - before[0], requests_served(B) - before[1])
R.check("affinity: requests without a route key spread over both", sum(delta) == 8 and min(delta) > 0, delta)
aff.stop()

# --- load through the balancer, one replica killed in the middle ---
results = []  # (start, end, status or exception text)
lock = threading.Lock()
stop_at = [time.time() + 1e9]
LOAD = {"prompt": "The capital of France is", "max_tokens": 24, "temperature": 0}


def client():
    while time.time() < stop_at[0]:
        t0 = time.time()
        try:
            st, data = lb.request("POST", "/v1/generate", LOAD, timeout=60)
            ok = st if st != 200 or json.loads(data).get("text") else "empty"
        except Exception as e:  # noqa: BLE001 - any failure is a result here
            ok = "%s: %s" % (type(e).__name__, e)
        with lock:
            results.append((t0, time.time(), ok))


before = (requests_served(A), requests_served(B))
threads = [threading.Thread(target=client) for _ in range(6)]
for t in threads:
    t.start()
time.sleep(3)
served = (requests_served(A) - before[0], requests_served(B) - before[1])
kill_t = time.time()
B.proc.send_signal(signal.SIGKILL)
B.proc.wait()
kill_done = time.time()
time.sleep(4)
stop_at[0] = time.time()
for t in threads:
    t.join()

pre = [r for r in results if r[1] < kill_t]
in_flight = [r for r in results if r[0] < kill_done <= r[1] or r[0] <= kill_t <= r[1]]
post = [r for r in results if r[0] > kill_done]
R.check("both replicas answered through nginx before the kill (least_conn)",
        served[0] > 0 and served[1] > 0, served)
R.check("every request before the kill succeeded", all(r[2] == 200 for r in pre),
        [r[2] for r in pre if r[2] != 200][:5])
R.check("requests after the kill were served (%d)" % len(post), len(post) >= 6, len(post))
R.check("every request after the kill succeeded through replica A",
        all(r[2] == 200 for r in post), [r[2] for r in post if r[2] != 200][:5])
failed_in_flight = [r for r in in_flight if r[2] != 200]
R.check("only requests in flight at the kill may fail (%d of %d failed)" %
        (len(failed_in_flight), len(in_flight)), len(failed_in_flight) <= len(threads))
print("# load: %d requests before the kill, %d in flight, %d after; %d in-flight failures" %
      (len(pre), len(in_flight), len(post), len(failed_in_flight)))

lb.stop()
R.eq("replica A exits 0 on SIGTERM", A.stop(cleanup=False), 0)
B.logf.close()
shutil.rmtree(shared, ignore_errors=True)
R.finish()
