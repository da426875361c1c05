#!/usr/bin/env bash
# Train TASK once per method column of the survey's tables, with the survey's command line.
#
# usage: scripts/sweep_methods.sh TASK [--only col,...] [--seeds 0,1,2] [--out-dir DIR] [--sop] [--dry-run]
#                                      [-- EXTRA TRAIN ARGS]
#
# TASK: cf10, scf10, shd, ncars (N-CARS pre-training, SFOD/pretrain.py), sfod (Gen1, SFOD/train.py) or coco. The
# jobs, their command lines, scripts and run names are the cells of the survey's table of record (common/survey;
# python scripts/reproduce.py --list): --only takes survey columns or run names (IF, lif, psn_k3, KD-response, ...;
# a column that needs another run brings it, trained first: a distillation column its teacher ann, a Gen1 column
# its N-CARS backbone pretrain_<run>, in the same DIR). Run directory
# DIR/<run>[_sSEED] (DIR default: runs/TASK/survey, as scripts/reproduce.py); finished runs
# (summary.json) are skipped, unfinished ones (checkpoint_latest.pt) resumed, both only when the run's recorded
# configuration equals the requested one (else the job fails naming the differing flags). Several GPUs in
# CUDA_VISIBLE_DEVICES (e.g. 0,1,2,3) run one job per GPU in parallel; logs in DIR/logs/.
# EXTRA arguments go to every run (e.g. -- --epochs 2 --limit-batches 5 for a smoke test; use another --out-dir).
# --sop: instead of training, count the SOPs of the finished runs on the test set in the survey's convention of the
# task (the table's --sop-mode; written to <run dir>/sop.json).
# Collect the results with: python scripts/collect_results.py DIR
set -uo pipefail
# shellcheck source=scripts/sweep_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"

# table QUERY...: the table of record's answer (scripts/reproduce.py), or die with its one-line error.
table() {
    local out
    out=$("$PYTHON" "$SWEEP_ROOT/scripts/reproduce.py" "$@" 2>&1) || die "${out#reproduce.py: error: }"
    echo "$out"
}

take_task "${1:-}"
shift
ONLY="" SOP=0 OUT_DIR="runs/$TASK/survey"
OPTIONS[--only]=ONLY SWITCHES[--sop]=SOP
parse_options "$@"

# column<TAB>run<TAB>needed run|-<TAB>SOP mode|-<TAB>script<TAB>args, the needed runs (teacher, backbone) first
JOBS=$(table --sweep-jobs "$TASK" ${ONLY:+--columns "$ONLY"}) || exit 2  # also checks TASK
if (( SOP )); then  # the task's SOP convention (one per task); none when no selected cell has a published SOP
    SOP_MODE=$(awk -F'\t' '$4 != "-" {print $4; exit}' <<<"$JOBS")
    SOP_MODE=${SOP_MODE:-none}
fi
mapfile -t seeds < <(split_list "$SEEDS")
(( ${#seeds[@]} )) || seeds=("")

# queue_stage needs|other|sop: queue the jobs of one stage. A run that needs another finished run (distillation:
# its teacher; Gen1: its N-CARS backbone; the run of the same seed) runs in a second stage; SOPs are counted for
# every cell with a published SOP.
queue_stage() {
    local _col name teacher sop script flags seed run teacher_dir stage
    while IFS=$'\t' read -r _col name teacher sop script flags; do
        stage=other
        [[ $teacher != - ]] && stage=needs
        [[ $1 == sop ]] && stage=sop
        [[ $stage == "$1" && ! ($1 == sop && $sop == -) ]] || continue
        for seed in "${seeds[@]}"; do
            run=$name${seed:+_s$seed}
            teacher_dir=$OUT_DIR/$teacher${seed:+_s$seed}
            if [[ $stage == needs && $DRY_RUN != 1 && ! -f $teacher_dir/summary.json ]]; then
                echo "FAILED  $run (the run it needs, $teacher_dir, has not finished)" >&2
                N_FAILED=$((N_FAILED + 1))
                continue
            fi
            queue_job "$run" "${flags//\{teacher\}/$teacher_dir}${seed:+ --seed $seed}" "$script"
        done
    done <<<"$JOBS"
}

echo "sweep_methods: $TASK, runs $(cut -f2 <<<"$JOBS" | paste -sd' ') -> $OUT_DIR${SOP_MODE:+ (SOP counting, $SOP_MODE)}"
if [[ -n $SOP_MODE ]]; then
    queue_stage sop
    run_queue
else
    queue_stage other
    run_queue
    queue_stage needs
    run_queue
fi
sweep_summary
