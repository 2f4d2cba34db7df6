#!/usr/bin/env bash
# Study 2 on one GPU, reduced: the pre-registered bands and seeds of docs/reproduction.md with
# the ResNet-18 `cifar10` preset (batch 512, K = 4096, bf16 autocast) for EPOCHS epochs, a
# linear probe after each run, then the same analyses as scripts/study2_results.sh.
#
#   scripts/study2_gpu.sh DATA_DIR OUT_DIR [EPOCHS] [PARALLEL]
#
# DATA_DIR holds CIFAR-10 as npz (train.npz, test.npz, classes.txt; ../shared/data/cifar10 here,
# copied to the device machine). PARALLEL runs train at once on the one device, each its own
# `hardstat sweep --index I` (array tasks share the sweep's lock); on an H200 a ResNet-18 step
# at batch 512 took 0.044 s with one run (docs/scaling.md), so several small runs in parallel
# keep the device busier than one. Defaults: 15 epochs, 4 at once (21 runs). PRESET and DEVICE
# (environment; default cifar10 and cuda) let the script itself be tried on a CPU, e.g.
# PRESET=tiny DEVICE=cpu scripts/study2_gpu.sh hardstat/data/cifar10-demo /tmp/s2 1 2
set -euo pipefail
data=${1:?usage: scripts/study2_gpu.sh DATA_DIR OUT_DIR [EPOCHS] [PARALLEL]}
out=${2:?usage: scripts/study2_gpu.sh DATA_DIR OUT_DIR [EPOCHS] [PARALLEL]}
epochs=${3:-15}
parallel=${4:-4}
bands=0-100,0-5,random:5,5-100,random=5-100,0.1-100,10-100
steps_per_epoch=$((50000 / 512))
# log every K/B + 1 = 9 steps (>= K/B = 8, not a divisor of the 97 steps of an epoch)
common=(--preset "${PRESET:-cifar10}" --dataset "npz:$data" --epochs "$epochs"
        --set "device=${DEVICE:-cuda}"
        --set log.every=9 --set "eval.knn_every=$epochs" --eval linear
        --bands "$bands" --seeds 0,1,2 --out "$out")
# plan the sweep: writes sweep.json (and a Slurm script, unused here), trains nothing
hardstat sweep "${common[@]}" --launcher slurm > /dev/null
n=$(python -c "import json,sys; print(len(json.load(open(sys.argv[1]))['runs']))" "$out/sweep.json")
echo "$n runs of $epochs epochs ($((epochs * steps_per_epoch)) steps each), $parallel at a time" >&2
for ((i = 0; i < n; i++)); do
    hardstat sweep --out "$out" --index "$i" -q &
    while (( $(jobs -rp | wc -l) >= parallel )); do sleep 2; done
done
wait
hardstat sweep --out "$out" --dry-run >&2  # every line should say finished, probe done
scripts/study2_results.sh "$out"
