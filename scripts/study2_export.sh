#!/usr/bin/env bash
# Study 2: copy the small result tables of every finished run of a sweep (manifest, evals,
# steps, queries) to docs/study2/runs/NAME, so the band analyses can be rerun from the
# repository alone. The logs (pairs) and checkpoints stay out.
#
#   scripts/study2_export.sh SWEEP_DIR
#
# A run is exported once it has finished training and has its linear probe (the primary
# metric); rerunning the script refreshes the copies.
set -euo pipefail
sweep=${1:?usage: scripts/study2_export.sh SWEEP_DIR}
dest=docs/study2/runs
mkdir -p "$dest"
for run in "$sweep"/*/; do
    run=${run%/}
    name=$(basename "$run")
    [ -f "$run/manifest.json" ] || continue
    finished=$(hardstat sql "$run" "SELECT count(*) FROM runs WHERE status = 'finished'" -f csv | tail -n 1)
    linear=$(hardstat sql "$run" "SELECT count(*) FROM evals WHERE kind = 'linear'" -f csv | tail -n 1)
    if [ "$finished" != 1 ] || [ "$linear" = 0 ]; then
        echo "skip $name: not finished or no linear probe yet" >&2
        continue
    fi
    rm -rf "${dest:?}/$name.tmp"
    mkdir -p "$dest/$name.tmp"
    cp "$run/manifest.json" "$dest/$name.tmp/"
    for table in evals steps queries; do
        [ -d "$run/$table" ] && cp -r "$run/$table" "$dest/$name.tmp/"
    done
    rm -rf "${dest:?}/$name"
    mv "$dest/$name.tmp" "$dest/$name"
    echo "exported $name" >&2
done
