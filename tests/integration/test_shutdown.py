"""Graceful shutdown: SIGTERM with a request in flight lets it complete and
the process exit 0; with a short grace period the request is cancelled
instead; new requests get 503 while draining. Client disconnects cancel
their generation (streaming or not) and free the slot.

usage: test_shutdown.py PATH/TO/t2
"""
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import Results, Server, t2_path  # noqa: E402

R = Results("shutdown")
T2 = t2_path()
LONG = {"prompt": "a", "max_tokens": 300, "temperature": 20, "seed": 2, "stream": True,
        "adaptation": {"strategy": "none"}}


def refused(S):
    try:
        socket.create_connection((S.host, S.port), timeout=2).close()
        return False
    except OSError:
        return True


# 1. in flight at SIGTERM: completes
S = Server(T2)
seen = []


def on_event(ev, data):
    if not seen:
        S.signal(signal.SIGTERM)  # right after the stream started
    seen.append(ev)


st, _, events = S.stream("/v1/generate", LONG, on_event=on_event)
done = json.loads(events[-1][1]) if events and events[-1][0] == "done" else {}
R.check("in-flight stream completed after SIGTERM", st == 200 and done.get("finish_reason")
        == "length" and done["usage"]["completion_tokens"] == 300, (st, events[-2:]))
rc = S.wait(30)
R.eq("exit status 0", rc, 0)
R.check("log says draining and stopped", "SIGTERM: draining" in S.log() and "stopped" in S.log(),
        S.log()[-1500:])
R.check("no new connections after shutdown", refused(S))
S.stop()

# 2. grace period over: the request is cancelled, still a clean exit
S = Server(T2, "--grace", "0.3")
events = []
result = {}


started = threading.Event()


def client():
    result["r"] = S.stream("/v1/generate", dict(LONG, max_tokens=450),
                           on_event=lambda ev, data: started.set())


t = threading.Thread(target=client)
t.start()
started.wait(30)  # the stream is under way (fixed sleeps are flaky on a loaded machine)
S.signal(signal.SIGINT)
t.join(30)
st, _, events = result.get("r", (0, {}, []))
last = json.loads(events[-1][1]) if events and events[-1][0] == "done" else {}
R.check("request cancelled after the grace period",
        st == 200 and last.get("finish_reason") == "cancelled", (st, events[-2:]))
R.eq("exit status 0 after SIGINT", S.wait(30), 0)
S.stop()

# 3. while draining: /ready 503, new requests 503 on open connections
S = Server(T2, "--grace", "5")
conn = S.conn()
conn.request("GET", "/health")  # an idle keep-alive connection
conn.getresponse().read()
result = {}
started = threading.Event()
t = threading.Thread(target=lambda: result.update(
    r=S.stream("/v1/generate", LONG, on_event=lambda ev, data: started.set())))
t.start()
started.wait(30)
S.signal(signal.SIGTERM)
end = time.time() + 10
while "draining" not in S.log() and time.time() < end:  # the signal has been handled
    time.sleep(0.02)
conn.request("POST", "/v1/generate", body=b'{"prompt": "x"}',
             headers={"Content-Type": "application/json"})
r = conn.getresponse()
body = r.read()
R.check("new request on an open connection while draining -> 503", r.status == 503
        and b"shutting down" in body, (r.status, body))
conn.close()
t.join(30)
R.eq("the in-flight one still completed", result.get("r", (0,))[0], 200)
R.eq("exit status 0", S.wait(30), 0)
S.stop()

# 4. client gone: its generation is cancelled and its slot freed
S = Server(T2, "--max-seqs", "1")
QUICK = {"prompt": "What is 2 + 3?", "max_tokens": 4, "adaptation": {"strategy": "none"}}


def gone_then_quick(stream):
    body = dict(LONG, max_tokens=450, stream=stream)
    sock = socket.create_connection((S.host, S.port), timeout=30)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: t2\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    if stream:
        sock.recv(4096)  # the stream has started
    else:
        time.sleep(0.2)  # the generation has started
    sock.close()
    t0 = time.time()
    st, b, _ = S.json("POST", "/v1/generate", QUICK)  # needs the only slot
    return st, time.time() - t0


st, dt = gone_then_quick(True)
R.check("streaming client gone: slot freed at once", st == 200 and dt < 1.0, (st, dt))
st, dt = gone_then_quick(False)
R.check("waiting client gone: slot freed at once", st == 200 and dt < 1.0, (st, dt))
time.sleep(0.2)
R.check("the abandoned requests are logged as aborted",
        S.log().count("aborted") >= 2, S.log()[-1500:])
R.eq("exit status 0", S.stop(), 0)
R.finish()
