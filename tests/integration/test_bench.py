"""t2 bench: the --json interface the performance notes rely on (the
figures the issue names, a bandwidth probe paired with every decode run,
--fresh's never-seen-mixture ratios) on seedling's synthetic shape, --kernels'
table of kernel speeds, and its argument errors. Speed itself is never asserted: that is bench/'s job.

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


rc, out, err = bench(["--synthetic", "seedling", "--pp", "8", "--tg", "4", "--reps", "3",
                      "--threads", "2", "--json"])
j = json.loads(out) if rc == 0 else {}
R.check("--json runs", rc == 0, (rc, err[-300:]))
for key in ("pp_tps", "tg_tps", "bytes_per_token", "read_bandwidth_gbs", "tg_fraction_of_limit",
            "read_bandwidth_gbs_start"):
    R.check("--json has a positive %s" % key, positive(j, key), j.get(key))
runs = j.get("paired_runs") or []
R.check("one bandwidth probe per decode run", len(runs) == 3
        and all(positive(r, "read_bandwidth_gbs") and positive(r, "tg_fraction_of_limit")
                for r in runs), runs)


def median(v):
    return sorted(v)[len(v) // 2]


R.check("tg_fraction_of_limit is the median of the runs' ratios to their own probe",
        runs and j.get("tg_fraction_of_limit") == median([r["tg_fraction_of_limit"] for r in runs]), j)
R.check("read_bandwidth_gbs is the median of the probes",
        runs and j.get("read_bandwidth_gbs") == median([r["read_bandwidth_gbs"] for r in runs]), j)
R.check("synthetic logits are finite", j.get("logits_finite") is True, j)
R.eq("--json names the K/V cache format", j.get("kv_cache"), "f32")
kv_f32 = j.get("kv_bytes_per_token", 0)
w = j.get("bytes_per_token", 0)
R.check("tg_fraction_of_limit_with_kv counts the K/V cache read with the weights",
        kv_f32 > 0 and w > 0 and abs(j.get("tg_fraction_of_limit_with_kv", 0)
                                     - j.get("tg_fraction_of_limit", 0) * (w + kv_f32) / w)
        < 1e-4 * j.get("tg_fraction_of_limit", 1), j)

rc, out, err = bench(["--synthetic", "seedling", "--pp", "8", "--tg", "4", "--reps", "1",
                      "--threads", "2", "--kv-cache", "f16", "--json"])
j = json.loads(out) if rc == 0 else {}
R.check("--kv-cache f16 runs", rc == 0 and j.get("kv_cache") == "f16"
        and j.get("logits_finite") is True, (rc, err[-300:], j))
R.check("an f16 cache reads half the K/V bytes", kv_f32 > 0 and j.get("kv_bytes_per_token") * 2 == kv_f32,
        (kv_f32, j.get("kv_bytes_per_token")))

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
        rc == 0 and "time to first token / base" in out and "next to each decode run" in out,
        out[-600:])

# a small out-of-cache matrix keeps this quick under ASan (the default is
# 4x the last-level cache: 128 MiB..2 GiB)
rc, out, err = bench(["--kernels", "--kernels-mib", "8", "--json"])
j = json.loads(out) if rc == 0 else {}
R.check("--kernels --json runs", rc == 0, (rc, err[-300:]))
R.check("--kernels-mib sizes the out-of-cache matrix", j.get("bytes_out_of_cache") == 8 << 20, j)
rows = j.get("results") or []
kinds = {(r.get("variant"), r.get("format"), r.get("matrix")) for r in rows}
R.check("--kernels times the scalar reference in cache for every format",
        all(("scalar", f, "cached") in kinds for f in ("f32", "bf16", "q8_0")), sorted(kinds))
R.check("--kernels gives a positive GMAC/s for 1, 2, 4, 8 and 16 rows of x in every row",
        rows and all(sorted(r["gmacs"], key=int) == ["1", "2", "4", "8", "16"]
                     and all(v > 0 for v in r["gmacs"].values()) for r in rows), rows[:2])
R.check("--kernels measures one core's sgemm as the limit", positive(j, "sgemm_gflops_one_core"), j)

for args, needle in ((["--synthetic", "seedling", "--fresh", "--batch", "2"], "--fresh goes alone"),
                     (["--kernels", "--synthetic", "seedling"], "--kernels goes alone"),
                     (["--synthetic", "seedling", "--kernels-mib", "8"], "goes with --kernels"),
                     (["--kernels", "--kernels-mib", "0"], "--kernels-mib"),
                     (["--synthetic", "seedling", "--kv-cache", "bf16"], "--kv-cache"),
                     (["--synthetic", "nope"], "nope"),
                     (["--synthetic", "seedling", "--pp", "0"], "--pp"),
                     (["--model", "x", "--synthetic", "seedling"], "exactly one")):
    rc, out, err = bench(args)
    R.check("bench %s fails naming the problem" % " ".join(args), rc != 0 and needle in err,
            (rc, err[-300:]))
R.finish()
