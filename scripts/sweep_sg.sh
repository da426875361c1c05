#!/usr/bin/env bash
# Train TASK once per surrogate function (all registered ones, or --sg a,b,c).
#
# usage: scripts/sweep_sg.sh TASK [--sg a,b,c] [--alpha x,y] [--seeds 0,1,2] [--out-dir DIR] [--dry-run]
#                                 [-- EXTRA TRAIN ARGS]
#
# One run per surrogate (x alpha x seed): TASK/train.py --sg NAME [--sg-alpha A] [--seed S] EXTRA
#   --out-dir DIR --run-name NAME[_aA][_sS]        (DIR default: runs/TASK/sg)
# Finished runs (summary.json) are skipped, unfinished ones (checkpoint_latest.pt) resumed, both only when the
# run's recorded configuration equals the requested one (else the job fails naming the differing flags). Several
# GPUs in CUDA_VISIBLE_DEVICES (e.g. 0,1,2,3) run one job per GPU in parallel; logs in DIR/logs/. Runs with
# different EXTRA arguments need their own --out-dir (the run name only encodes surrogate, alpha and seed).
# Collect the results with: python scripts/collect_results.py DIR
set -uo pipefail
# shellcheck source=scripts/sweep_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"

take_task "${1:-}"
shift
check_task "$TASK"
SG_LIST="" ALPHAS="" OUT_DIR="runs/$TASK/sg"
OPTIONS[--sg]=SG_LIST OPTIONS[--alpha]=ALPHAS
parse_options "$@"

# The registry decides the surrogate names: all of them by default, and it validates a given --sg list.
registered=$("$PYTHON" -c "from common.surrogate import names; print(' '.join(names()))") || die "cannot read the surrogate registry (common/surrogate.py) with $PYTHON"
if [[ -z $SG_LIST ]]; then
    mapfile -t surrogates < <(tr ' ' '\n' <<<"$registered")
else
    mapfile -t surrogates < <(split_list "$SG_LIST")
    for sg in "${surrogates[@]}"; do
        [[ " $registered " == *" $sg "* ]] || die "unknown surrogate '$sg'; registered: $registered"
    done
fi
mapfile -t alphas < <(split_list "$ALPHAS")
mapfile -t seeds < <(split_list "$SEEDS")
(( ${#alphas[@]} )) || alphas=("")
(( ${#seeds[@]} )) || seeds=("")

for sg in "${surrogates[@]}"; do
    for alpha in "${alphas[@]}"; do
        for seed in "${seeds[@]}"; do
            name=$sg job_flags="--sg $sg"
            if [[ -n $alpha ]]; then name+="_a$alpha"; job_flags+=" --sg-alpha $alpha"
            else job_flags+=" --sg-alpha default"; fi  # each function's own alpha, whatever the task's default
            [[ -n $seed ]] && { name+="_s$seed"; job_flags+=" --seed $seed"; }
            queue_job "$name" "$job_flags"
        done
    done
done
echo "sweep_sg: $TASK, ${#JOB_NAMES[@]} runs (${#surrogates[@]} surrogates) -> $OUT_DIR"
run_queue
sweep_summary
