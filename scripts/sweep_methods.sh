#!/usr/bin/env bash
# Train TASK once per method column of the survey's tables, with the survey's command line.
#
# usage: scripts/sweep_methods.sh TASK [--only col,...] [--seeds 0,1,2] [--out-dir DIR] [--sop] [--dry-run]
#                                      [-- EXTRA TRAIN ARGS]
#
# TASK: cf10, scf10 or shd. Columns: if lif clif psn tebn osr blockalif, and for cf10 also tandem
# distill_response distill_feature (plus ann, the distillation teacher, trained first when a distillation
# column is selected). Run directory DIR/<column>[_sSEED] (DIR default: runs/TASK/methods); finished runs
# (summary.json) are skipped, unfinished ones (checkpoint_latest.pt) resumed, both only when the run's recorded
# configuration equals the requested one (else the job fails naming the differing flags). Several GPUs in
# CUDA_VISIBLE_DEVICES (e.g. 0,1,2,3) run one job per GPU in parallel; logs in DIR/logs/.
# EXTRA arguments go to every run (e.g. -- --epochs 2 --limit-batches 5 for a smoke test; use another --out-dir).
# --sop: instead of training, count the SOPs of the finished runs on the test set in the survey's convention
# (--sop --sop-mode paper for cf10/scf10, corrected for shd; written to <run dir>/sop.json).
# Collect the results with: python scripts/collect_results.py DIR
set -uo pipefail
# shellcheck source=scripts/sweep_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"

usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; }

# The survey's command line per task (survey-cf10-scf10-speed.md §1, §3, §8; survey-shd-gen1-coco.md §1.4-1.5).
# OPT is left out where a column sets its own --opt.
declare -A BASE=(
    [cf10]="--T 4 --epochs 256 -b 128 --amp"
    [scf10]="--epochs 256 -b 128 --amp"
    [shd]="--epochs 150 -b 256 --survey-param-groups --no-mask-padding"
)
declare -A OPT=([cf10]="--opt sgd --lr 0.1" [scf10]="--opt sgd --lr 0.1" [shd]="")
# The survey's SOP convention per task (survey-cf10-scf10-speed.md §4, survey-shd-gen1-coco.md §1.6).
declare -A SOP_MODES=([cf10]=paper [scf10]=paper [shd]=corrected)
# task column run-name flags ({teacher} = the ann run directory). First column = default order of the sweep.
JOBS=$(cat <<'EOF'
cf10  ann              ann              --method ann
cf10  if               if               --neuron if --norm bn --method bptt
cf10  lif              lif              --neuron lif --norm bn --method bptt
cf10  clif             clif             --neuron clif --norm bn --method bptt
cf10  psn              psn              --neuron psn --norm bn --method bptt
cf10  tebn             tebn             --neuron lif --norm tebn --method bptt
cf10  osr              osr              --neuron online_lif --norm osr --method online --neuron-opt ots_batch_eval=true
cf10  blockalif        blockalif        --neuron blockalif --norm bn --method bptt --neuron-opt latency=1 --neuron-opt b_init=1.8
cf10  tandem           tandem           --method tandem --opt sgd --lr 0.001
cf10  distill_response distill_response --neuron lif --norm bn --method distill_response --teacher {teacher} --kd-alpha 0.001 --kd-temp 4 --kd-survey-quirk
cf10  distill_feature  distill_feature  --neuron lif --norm bn --method distill_feature --teacher {teacher} --kd-beta 0.1
scf10 if               if               --neuron if --norm bn --method bptt
scf10 lif              lif              --neuron lif --norm bn --method bptt
scf10 clif             clif             --neuron clif --norm bn --method bptt
scf10 psn              psn              --neuron sliding_psn --norm bn --method bptt --neuron-opt k=4
scf10 tebn             tebn             --neuron lif --norm tebn --method bptt
scf10 osr              osr              --neuron online_lif --norm osr --method online --neuron-opt ots_batch_eval=true
scf10 blockalif        blockalif        --neuron blockalif --norm bn --method bptt --neuron-opt latency=1 --neuron-opt b_init=1.8
shd   if               if               --neuron if --norm bn --method bptt
shd   lif              lif              --neuron lif --norm bn --method bptt
shd   clif             clif             --neuron clif --norm bn --method bptt --neuron-opt clif_sigmoid_carry=true
shd   psn              psn_k2           --neuron sliding_psn --norm bn --method bptt --neuron-opt k=2
shd   psn              psn_k3           --neuron sliding_psn --norm bn --method bptt --neuron-opt k=3
shd   psn              psn_k4           --neuron sliding_psn --norm bn --method bptt --neuron-opt k=4
shd   tebn             tebn_if          --neuron if --norm tebn --method bptt
shd   osr              osr              --neuron online_lif --norm osr --method bptt --sg-alpha 2 --neuron-opt ots_batch_eval=true
shd   blockalif        blockalif        --neuron blockalif --norm bn --method bptt --neuron-opt latency=1 --neuron-opt b_init=1.8
EOF
)

TASK=${1:-}
[[ $TASK == -h || $TASK == --help ]] && { usage; exit 0; }
[[ -z $TASK || $TASK == -* ]] && { usage >&2; die "missing TASK"; }
shift
[[ -n ${BASE[$TASK]:-} ]] || die "unknown task '$TASK'; the survey's method tables cover: ${!BASE[*]}"
check_task "$TASK"

ONLY="" SEEDS="" OUT_DIR="runs/$TASK/methods" EXTRA=()
while (( $# )); do
    case $1 in
        --only) ONLY=${2:?--only needs a list}; shift 2 ;;
        --seeds) SEEDS=${2:?--seeds needs a list}; shift 2 ;;
        --out-dir) OUT_DIR=${2:?--out-dir needs a folder}; shift 2 ;;
        --sop) SOP_MODE=${SOP_MODES[$TASK]}; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) die "unknown option '$1' (train.py arguments go after --)" ;;
    esac
done
check_extra "${EXTRA[@]}"

mapfile -t columns < <(awk -v t="$TASK" '$1 == t && !seen[$2]++ {print $2}' <<<"$JOBS")
if [[ -n $ONLY ]]; then
    mapfile -t wanted < <(split_list "$ONLY")
    for col in "${wanted[@]}"; do
        [[ " ${columns[*]} " == *" $col "* ]] || die "unknown column '$col' for $TASK; columns: ${columns[*]}"
    done
    # distillation needs its teacher
    [[ " ${wanted[*]} " == *" distill_"* && " ${wanted[*]} " != *" ann "* ]] && wanted=(ann "${wanted[@]}")
    columns=("${wanted[@]}")
fi
mapfile -t seeds < <(split_list "$SEEDS")
(( ${#seeds[@]} )) || seeds=("")

# queue_stage distill|other|sop: queue the selected jobs of one stage. A distillation run needs its finished teacher
# (the ann run of the same seed), so it runs in a second stage; SOPs are counted for every column but the ANN.
queue_stage() {
    local task col name flags seed run teacher stage
    while read -r task col name flags; do
        [[ $task == "$TASK" && " ${columns[*]} " == *" $col "* ]] || continue
        stage=other
        [[ $col == distill_* ]] && stage=distill
        [[ $1 == sop ]] && stage=sop
        [[ $stage == "$1" && ! ($1 == sop && $col == ann) ]] || continue
        [[ " $flags " == *" --opt "* ]] || flags="${OPT[$TASK]} $flags"
        for seed in "${seeds[@]}"; do
            run=$name${seed:+_s$seed}
            teacher=$OUT_DIR/ann${seed:+_s$seed}
            if [[ $stage == distill && $DRY_RUN != 1 && ! -f $teacher/summary.json ]]; then
                echo "FAILED  $run (its teacher $teacher has not finished)" >&2
                N_FAILED=$((N_FAILED + 1))
                continue
            fi
            queue_job "$run" "${BASE[$TASK]} ${flags//\{teacher\}/$teacher}${seed:+ --seed $seed}"
        done
    done <<<"$JOBS"
}

echo "sweep_methods: $TASK, columns ${columns[*]} -> $OUT_DIR${SOP_MODE:+ (SOP counting, $SOP_MODE)}"
if [[ -n $SOP_MODE ]]; then
    queue_stage sop
    run_queue
else
    queue_stage other
    run_queue
    queue_stage distill
    run_queue
fi
sweep_summary
