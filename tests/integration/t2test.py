"""Helpers for t2's integration tests (Python 3 standard library only).

Server starts `t2 serve --port 0` on the seedling model with a temporary
copy of its experts, reads the URL from the log line
`t2: listening on http://HOST:PORT`, and waits for GET /ready.
Results counts checks and prints the final `N passed, M failed` line.
"""
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SHARED = os.environ.get("T2_SHARED") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared")
MODEL = os.path.join(SHARED, "models", "seedling")


SERVERS = []


def _die_with_parent():
    """In the child: a server whose test process dies is killed too (Linux
    prctl PR_SET_PDEATHSIG), so no server outlives an interrupted test."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Results:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        sys.excepthook = self._crashed

    def _crashed(self, kind, value, tb):
        """An exception ends the test: report it as a failure, stop the servers."""
        import traceback
        traceback.print_exception(kind, value, tb)
        for srv in SERVERS:
            if srv.proc.poll() is None:
                srv.proc.kill()
        print("%d passed, %d failed" % (self.passed, self.failed + 1), flush=True)
        sys.exit(1)

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
            print("ok   %s" % what, flush=True)
        else:
            self.failed += 1
            print("FAIL %s %s" % (what, detail), flush=True)
        return ok

    def eq(self, what, got, want):
        return self.check(what, got == want, "got %r, want %r" % (got, want))

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(1 if self.failed else 0)


def load_jsonl(name, n):
    out = []
    with open(os.path.join(MODEL, "data", name)) as f:
        for line in f:
            out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def http_request(host, port, method, path, body=None, headers=None, timeout=120):
    """One request on its own connection -> (status, headers dict (lower-case
    names), body bytes). A dict or list body is sent as JSON."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict({"Content-Type": "application/json"}, **(headers or {}))
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def expert_names(server):
    """Sorted names of GET /v1/experts, None when it does not answer 200."""
    st, body, _ = server.json("GET", "/v1/experts")
    return sorted(e["name"] for e in body.get("data", body.get("experts", []))) if st == 200 else None


class Server:
    def __init__(self, t2, *args, env=None, experts=True, ready=True, keep_tmp=None):
        self.tmp = keep_tmp or tempfile.mkdtemp(prefix="t2it-")
        self.experts = os.path.join(self.tmp, "experts")
        self.profiles = os.path.join(self.tmp, "profiles")
        if experts and not os.path.isdir(self.experts):
            shutil.copytree(os.path.join(MODEL, "experts"), self.experts)
            for f in os.listdir(self.experts):
                os.chmod(os.path.join(self.experts, f), 0o644)
            os.chmod(self.experts, 0o755)
        # replicas sharing a tmp dir (keep_tmp) keep their own logs
        self.log_path = os.path.join(self.tmp, "server-%d.log" % len(SERVERS) if keep_tmp else "server.log")
        self.logf = open(self.log_path, "w")
        cmd = [t2, "serve", "--model", MODEL, "--port", "0", "--threads", "2",
               "--profiles", self.profiles,
               "--experts", self.experts if experts else "none"] + list(args)
        # debugging aids: T2_TEST_WRAPPER="valgrind -q" runs the server under
        # a tool, T2_TEST_ARGS adds flags (e.g. "--svd-cache DIR")
        cmd = shlex.split(os.environ.get("T2_TEST_WRAPPER", "")) + cmd + \
            shlex.split(os.environ.get("T2_TEST_ARGS", ""))
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.logf,
                                     env=full_env, preexec_fn=_die_with_parent)
        SERVERS.append(self)
        slow = 20 if os.environ.get("T2_TEST_WRAPPER") else 1
        self.host, self.port = self._wait_url(30 * slow)
        if ready:
            self.wait_ready(60 * slow)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def _wait_url(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)", self.log())
            if m:
                return m.group(1).strip("[]"), int(m.group(2))
            if self.proc.poll() is not None:
                raise RuntimeError("t2 serve exited early:\n" + self.log())
            time.sleep(0.02)
        raise RuntimeError("no 'listening on' line:\n" + self.log())

    def wait_ready(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if self.request("GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("t2 serve exited while loading:\n" + self.log())
            time.sleep(0.05)
        raise RuntimeError("not ready in time:\n" + self.log())

    def conn(self, timeout=120):
        if os.environ.get("T2_TEST_WRAPPER"):
            timeout *= 20
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=120):
        """-> (status, headers dict (lower-case names), body bytes)"""
        if os.environ.get("T2_TEST_WRAPPER"):
            timeout *= 20
        return http_request(self.host, self.port, method, path, body, headers, timeout)

    def json(self, method, path, body=None, headers=None, timeout=120):
        """-> (status, parsed JSON or None, headers)"""
        status, hdrs, data = self.request(method, path, body, headers, timeout)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, parsed, hdrs

    def stream(self, path, body, headers=None, on_event=None):
        """POST and parse Server-Sent Events -> (status, headers, [(event, data)]).
        data is the raw data line text; on_event(event, data) is called as
        each arrives (tests use it to act in the middle of a stream)."""
        c = self.conn()
        try:
            c.request("POST", path, body=json.dumps(body).encode(),
                      headers=dict({"Content-Type": "application/json"}, **(headers or {})))
            r = c.getresponse()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            if r.status != 200:
                return r.status, hdrs, [("http-error", r.read().decode())]
            events, event, data = [], None, []
            while True:
                line = r.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if data or event:
                        events.append((event, "\n".join(data)))
                        if on_event:
                            on_event(event, "\n".join(data))
                    event, data = None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
            return r.status, hdrs, events
        finally:
            c.close()

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        if os.environ.get("T2_TEST_WRAPPER"):
            timeout *= 20
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def stop(self, cleanup=True):
        rc = None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            rc = self.wait(30)
        else:
            rc = self.proc.returncode
        self.logf.close()
        if cleanup:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return rc


def t2_path():
    if len(sys.argv) < 2:
        sys.exit("usage: %s PATH/TO/t2" % sys.argv[0])
    return os.path.abspath(sys.argv[1])
