"""t2 bench: the --json interface the performance notes rely on (the
figures the issue names, the limits probed before and after, --fresh's
never-seen-mixture ratios) on seedling's synthetic shape, and its
argument errors. Speed itself is never asserted: that is bench/'s job.

usage: test_bench.py PATH/TO/t2
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from t2test import Results, t2_path  # noqa: E402

R = Results("bench")
T2 = t2_path()


def bench(args):
    p = subprocess.run([T2, "bench"] + args, capture_output=True, text=True, timeout=240)
    return p.returncode, p.stdout, p.stderr


def positive(j, key):
    v = j.get(key)
    return isinstance(v, (int, float)) and v > 0


rc, out, err = bench(["--synthetic", "seedling", "--pp", "8", "--tg", "4", "--reps", "1",
                      "--threads", "2", "--json"])
j = json.loads(out) if rc == 0 else {}
R.check("--json runs", rc == 0, (rc, err[-300:]))
for key in ("pp_tps", "tg_tps", "bytes_per_token", "read_bandwidth_gbs", "tg_fraction_of_limit",
            "read_bandwidth_gbs_before", "read_bandwidth_gbs_after"):
    R.check("--json has a positive %s" % key, positive(j, key), j.get(key))
R.check("the limit is the better of both probes",
        j.get("read_bandwidth_gbs") == max(j.get("read_bandwidth_gbs_before", 0),
                                           j.get("read_bandwidth_gbs_after", 0)), j)
R.check("tg_fraction_of_limit = achieved / limit",
        abs(j.get("tg_fraction_of_limit", 0) * j.get("read_bandwidth_gbs", 0)
            - j.get("tg_tps", 0) * j.get("bytes_per_token", 0) / 1e9) < 1e-3 * j.get("read_bandwidth_gbs", 1), j)
R.check("synthetic logits are finite", j.get("logits_finite") is True, j)

rc, out, err = bench(["--synthetic", "seedling", "--fresh", "--pp", "8", "--tg", "4", "--reps", "1",
                      "--threads", "2", "--json"])
j = json.loads(out) if rc == 0 else {}
R.check("--fresh runs", rc == 0, (rc, err[-300:]))
for key in ("pp_tps_fresh", "tg_tps_fresh", "fresh_ttft_ratio", "fresh_tg_ratio"):
    R.check("--fresh has a positive %s" % key, positive(j, key), j.get(key))
R.check("fresh_ttft_ratio = base prefill speed / fresh",
        abs(j.get("fresh_ttft_ratio", 0) - j.get("pp_tps", 0) / max(j.get("pp_tps_fresh", 1), 1e-9))
        < 1e-4 * j.get("fresh_ttft_ratio", 1), j)

rc, out, err = bench(["--synthetic", "seedling", "--pp", "8", "--tg", "4", "--reps", "1",
                      "--threads", "2", "--fresh"])
R.check("--fresh table has the TTFT row",
        rc == 0 and "time to first token / base" in out and "probed before, after" in out,
        out[-600:])

for args, needle in ((["--synthetic", "seedling", "--fresh", "--batch", "2"], "--fresh goes alone"),
                     (["--synthetic", "nope"], "nope"),
                     (["--synthetic", "seedling", "--pp", "0"], "--pp"),
                     (["--model", "x", "--synthetic", "seedling"], "exactly one")):
    rc, out, err = bench(args)
    R.check("bench %s fails naming the problem" % " ".join(args), rc != 0 and needle in err,
            (rc, err[-300:]))
R.finish()
