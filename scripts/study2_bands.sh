#!/usr/bin/env bash
# Study 2 of docs/reproduction.md: the band tables (C1-C4) from the runs' small result tables,
# which is all they need; run it on the committed copies to check every band number:
#
#   scripts/study2_bands.sh [RUNS_DIR]      # default docs/study2/runs
#
# Writes docs/study2/evals.csv, bands-table-a.{json,txt} (each band against 0-100, Holm over
# the table), bands-0-5-vs-random5.{json,txt} and bands-5-100-vs-random=5-100.{json,txt} (each
# band against its count-matched random control) and the chart docs/img/study2-bands.png.
set -euo pipefail
runs=${1:-docs/study2/runs}
out=docs/study2
mkdir -p "$out" docs/img

hardstat sql "$runs"/* \
    "SELECT r.run, r.band, r.seed, r.status, e.kind, e.epoch, e.step, e.top1, e.top5
     FROM evals e JOIN runs r USING (run) ORDER BY r.band, r.seed, e.kind, e.step" \
    -f csv > "$out/evals.csv"

# Table A (C1, C2/C3, C4): every band against 0-100, paired by seed, Holm over the table.
hardstat analyze bands "$runs"/* --metric linear --margin 1 -f json > "$out/bands-table-a.json"
hardstat analyze bands "$runs"/* --metric linear --margin 1 \
    --chart docs/img/study2-bands.png > "$out/bands-table-a.txt"

# Table B (C1', C3'): each band against its count-matched random control, one contrast each.
for pair in "0-5 random5 random:5" "5-100 random=5-100 random=5-100"; do
    read -r band control reference <<< "$pair"
    name="bands-$band-vs-$control"
    hardstat analyze bands "$runs/$band"-s* "$runs/$control"-s* --reference "$reference" \
        --metric linear --margin 1 -f json > "$out/$name.json"
    hardstat analyze bands "$runs/$band"-s* "$runs/$control"-s* --reference "$reference" \
        --metric linear --margin 1 > "$out/$name.txt"
done
ls -l "$out"
