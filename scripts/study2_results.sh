#!/usr/bin/env bash
# Study 2 of docs/reproduction.md: every analysis the pre-registration names, written as small
# result files under docs/study2/ and charts under docs/img/ (the logs stay outside the
# repository). Rerun it on the run directories to check every committed number.
#
#   scripts/study2_results.sh SWEEP_DIR [SWEEP_DIR_B]
#
# SWEEP_DIR holds the runs of part 1 (bands 0-100, 0-5, random:5, 5-100, 0.1-100, 10-100),
# SWEEP_DIR_B those of part 2 (random=5-100). Analyses whose runs are missing are skipped with
# a message, so the script can be run while the study is unfinished.
set -uo pipefail
runs=${1:?usage: scripts/study2_results.sh SWEEP_DIR [SWEEP_DIR_B]}
runs_b=${2:-}
out=docs/study2
mkdir -p "$out" docs/img
all=("$runs")
[ -n "$runs_b" ] && all+=("$runs_b")

have() {  # have GLOB...: true when every glob matches a finished run
    local g
    for g in "$@"; do
        compgen -G "$g/manifest.json" > /dev/null || return 1
    done
}

# Every evaluation of every run, with its band and seed.
hardstat sql "${all[@]}" \
    "SELECT r.run, r.band, r.seed, r.status, e.kind, e.epoch, e.step, e.top1, e.top5
     FROM evals e JOIN runs r USING (run) ORDER BY r.band, r.seed, e.kind, e.step" \
    -f csv > "$out/evals.csv"

# Table A (C1, C2/C3, C4): every band against 0-100, paired by seed, Holm over the table.
hardstat analyze bands "${all[@]}" --metric linear --margin 1 -f json > "$out/bands-table-a.json"
hardstat analyze bands "${all[@]}" --metric linear --margin 1 \
    --chart docs/img/study2-bands.png > "$out/bands-table-a.txt"

# Table B (C1', C3'): each band against its count-matched random control, one contrast each.
if have "$runs/0-5-s*" "$runs/random5-s*"; then
    hardstat analyze bands "$runs"/0-5-s* "$runs"/random5-s* --reference random:5 \
        --metric linear --margin 1 > "$out/bands-0-5-vs-random5.txt"
fi
control=$(compgen -G "${runs_b:-$runs}/random=5-100-s*" | head -n 1 || true)
if [ -n "$control" ] && have "$runs/5-100-s*"; then
    hardstat analyze bands "$runs"/5-100-s* "${runs_b:-$runs}"/random=5-100-s* \
        --reference random=5-100 --metric linear --margin 1 > "$out/bands-5-100-vs-random=5-100.txt"
fi

# C5: semantic closeness on the 0-100 runs, pairs logged in epochs 4 and 5.
hardstat analyze semantic "$runs"/0-100-s* --epochs 4-5 -f json > "$out/semantic.json"
hardstat analyze semantic "$runs"/0-100-s* --epochs 4-5 \
    --chart docs/img/study2-semantic.png > "$out/semantic.txt"

# C6: persistence across keys, per seed and across seeds; late training (epochs 4 and 5).
hardstat analyze consistency "$runs"/0-100-s* -f json > "$out/consistency.json"
hardstat analyze consistency "$runs"/0-100-s* \
    --chart docs/img/study2-consistency.png > "$out/consistency.txt"
hardstat analyze consistency "$runs"/0-100-s* --epochs 4,5 -f json > "$out/consistency-late.json"
for run in "$runs"/0-100-s*; do  # per seed: each run's own permutation p
    hardstat analyze consistency "$run" -f json > "$out/consistency-$(basename "$run").json"
done
ls -l "$out"
