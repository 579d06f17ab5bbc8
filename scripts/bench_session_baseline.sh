#!/usr/bin/env bash
# Issue 8's "Must show": verification of many candidates through a warm `Session` is at least
# 3x faster per candidate than the per-call `verify` of the code when the issue was filed
# (commit 5cd0a63), median over the library, SAME RUN.
#
# Usage: scripts/bench_session_baseline.sh BASE_BIN NEW_BIN [ROUNDS] [ITERS] [DIR]
#   BASE_BIN  `stepforge` built at 5cd0a63 (release), e.g.
#               git -C /work/main worktree add --detach /work/wt/base8 5cd0a63
#               (cd /work/wt/base8 && cargo build --release --locked -p stepforge-cli)
#               -> /work/wt/base8/target/release/stepforge
#   NEW_BIN   `stepforge` built from this tree (release)
#   ROUNDS    alternations of the two binaries (default 5): base, new, base, new, ...
#   ITERS     timed runs per task per round (default 50; each binary warms up once per task)
#   DIR       task directory (default operators/)
#
# At 5cd0a63, `stepforge bench DIR --format json` prints one per-call median per task
# (`median_us`, the reference impl verified from scratch). Today's bench prints the current
# per-call median (`median_us`) and the warm-session median (`session_median_us`: the
# reference impl verified as a candidate program through one `Session`). Alternating the two
# binaries spreads machine load over both; per task, each column is the median over rounds.
# Printed: per task the three medians and two ratios, then the median ratio over tasks of
#   baseline per-call / session   (the issue's target, >= 3x)
#   current per-call / session    (what the session saves over today's per-call path)
set -euo pipefail

base=${1:?usage: $0 BASE_BIN NEW_BIN [ROUNDS] [ITERS] [DIR]}
new=${2:?usage: $0 BASE_BIN NEW_BIN [ROUNDS] [ITERS] [DIR]}
rounds=${3:-5}
iters=${4:-50}
dir=${5:-operators/}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for r in $(seq 1 "$rounds"); do
    # `bench` exits non-zero when some task does not pass; the JSON is still complete.
    "$base" bench "$dir" --iters "$iters" --format json >"$out/base.$r.json" || true
    "$new" bench "$dir" --iters "$iters" --format json >"$out/new.$r.json" || true
    echo "round $r/$rounds done" >&2
done

python3 - "$out" "$rounds" "$iters" <<'PY'
import json, statistics, sys

out, rounds, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(kind):
    runs = []
    for r in range(1, rounds + 1):
        with open(f"{out}/{kind}.{r}.json") as f:
            runs.append(json.load(f))
    return runs

base, new = load("base"), load("new")

def per_task(runs, key):
    acc = {}
    for run in runs:
        for t in run["tasks"]:
            v = t.get(key)
            if isinstance(v, (int, float)):
                acc.setdefault(t["task"], []).append(float(v))
    return {k: statistics.median(v) for k, v in acc.items()}

b = per_task(base, "median_us")
c = per_task(new, "median_us")
s = per_task(new, "session_median_us")
verdict = {t["task"]: t["verdict"] for t in new[0]["tasks"]}
tasks = [t for t in sorted(b) if t in s and s[t] > 0]
missing = sorted(set(b) ^ set(s))

print(f"machine: {new[0].get('machine', '?')}")
print(f"{rounds} alternating rounds x {iters} runs per task; per task the median over rounds")
print()
print("| task | verdict | baseline per-call (us) | current per-call (us) | session (us) | baseline/session | current/session |")
print("|---|---|---:|---:|---:|---:|---:|")
r_base, r_cur = [], []
for t in tasks:
    rb, rc = b[t] / s[t], c[t] / s[t]
    r_base.append(rb)
    r_cur.append(rc)
    print(f"| {t} | {verdict.get(t, '?')} | {b[t]:.1f} | {c[t]:.1f} | {s[t]:.1f} | {rb:.2f}x | {rc:.2f}x |")
tb, tc, ts = (sum(d[t] for t in tasks) for d in (b, c, s))
print(f"| **total** | | {tb:.1f} | {tc:.1f} | {ts:.1f} | {tb / ts:.2f}x | {tc / ts:.2f}x |")
print()
print(f"median over {len(tasks)} tasks of baseline(5cd0a63) per-call / session: {statistics.median(r_base):.2f}x")
print(f"median over {len(tasks)} tasks of current per-call / session:          {statistics.median(r_cur):.2f}x")
print(f"lowest baseline/session: {min(r_base):.2f}x; lowest current/session: {min(r_cur):.2f}x")
if missing:
    print(f"tasks in only one of the two runs (not compared): {', '.join(missing)}")
PY
