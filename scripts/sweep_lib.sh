# shellcheck shell=bash
# Shared part of scripts/sweep_sg.sh and scripts/sweep_methods.sh (sourced, not run).
#
# A sweep queues jobs (a run name + train.py flags, and the script when it is not TASK/train.py) and runs them
# with run_queue:
# * run directory = $OUT_DIR/<run name> (train.py gets --out-dir and --run-name);
# * <run dir>/summary.json present         -> skipped (finished), but only if the run's recorded configuration
#                                             equals the requested one (train.py --resume <run dir> --check-config);
#                                             otherwise the job FAILS with the differing flags;
# * <run dir>/checkpoint_latest.pt present -> resumed with --resume <run dir> after the same check;
# * SOP_MODE=<mode> instead counts the SOPs of finished runs (--sop --sop-mode <mode> --resume <run dir>),
#   skipping runs whose sop.json already has that mode;
# * CUDA_VISIBLE_DEVICES=a,b,c (several) -> one job per GPU in parallel (each sees only its GPU),
#   otherwise one job after the other; output goes to $OUT_DIR/logs/<run name>[.sop].log;
# * DRY_RUN=1 -> print the command lines, run nothing.
# The sourcing script reads TASK with take_task and its options with parse_options (which set OUT_DIR, SEEDS and
# the array EXTRA, the arguments appended to every command).
# Environment: PYTHON (default: python).

SWEEP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
DRY_RUN=0
SOP_MODE=""
JOB_NAMES=()
JOB_ARGS=()
JOB_SCRIPTS=()
JOB_SCRIPT=""
N_DONE=0
N_SKIPPED=0
N_FAILED=0
declare -A OPTIONS=([--seeds]=SEEDS [--out-dir]=OUT_DIR) SWITCHES=([--dry-run]=DRY_RUN)  # parse_options

die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

# usage: the sourcing script's header comment (after the #! line).
usage() {
    awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"
}

# take_task ARG: TASK = ARG (the sweep's first argument); -h/--help prints the usage, a missing TASK dies.
take_task() {
    TASK=$1
    [[ $TASK == -h || $TASK == --help ]] && { usage; exit 0; }
    [[ -z $TASK || $TASK == -* ]] && { usage >&2; die "missing TASK"; }
    return 0
}

# parse_options ARG...: the options of every sweep (--seeds LIST, --out-dir DIR, --dry-run, -h/--help,
# -- EXTRA TRAIN ARGS) and the sourcing script's own, added before the call to OPTIONS (option -> variable that
# takes its value) and SWITCHES (option -> variable set to 1). Sets SEEDS, OUT_DIR (kept when not given), DRY_RUN
# and the array EXTRA.
parse_options() {
    SEEDS="" EXTRA=()
    while (( $# )); do
        case $1 in
            -h|--help) usage; exit 0 ;;
            --) shift; EXTRA=("$@"); break ;;
        esac
        if [[ -n ${OPTIONS[$1]:-} ]]; then
            [[ -n ${2:-} ]] || die "$1 needs a value"
            printf -v "${OPTIONS[$1]}" '%s' "$2"
            shift 2
        elif [[ -n ${SWITCHES[$1]:-} ]]; then
            printf -v "${SWITCHES[$1]}" 1
            shift
        else
            die "unknown option '$1' (train.py arguments go after --)"
        fi
    done
    check_extra "${EXTRA[@]}"
}

# check_task TASK: TASK/train.py must exist in the repository.
check_task() {
    local task=$1 found=() f
    if [[ -n $task && $task != */* && -f $SWEEP_ROOT/$task/train.py ]]; then
        return 0
    fi
    for f in "$SWEEP_ROOT"/*/train.py; do
        [[ -f $f ]] && found+=("$(basename "$(dirname "$f")")")
    done
    die "unknown task '$task' (no $task/train.py); available: ${found[*]:-none}"
}

# script_path SCRIPT: a script of the repository (e.g. SFOD/pretrain.py), relative when run from its root.
script_path() {
    if [[ $PWD == "$SWEEP_ROOT" ]]; then echo "$1"; else echo "$SWEEP_ROOT/$1"; fi
}

# split_list "a,b,c" -> prints a b c (one per line)
split_list() {
    tr ',' '\n' <<<"$1" | sed '/^$/d'
}

# check_extra ARG...: the sweep owns the run directory flags.
check_extra() {
    local a
    for a in "$@"; do
        case $a in
            --out-dir|--out-dir=*|--run-name|--run-name=*|--resume|--resume=*|--sop|--sop-mode|--sop-mode=*)
                die "do not pass ${a%%=*} after --: the sweep sets it" ;;
        esac
    done
}

# queue_job NAME FLAGS [SCRIPT]: FLAGS is a space-separated word list (no quoting); SCRIPT defaults to TASK/train.py.
queue_job() {
    JOB_NAMES+=("$1")
    JOB_ARGS+=("$2")
    JOB_SCRIPTS+=("${3:-$TASK/train.py}")
}

# same_config NAME FLAGS -> status 0 if the run's recorded configuration equals the requested one; otherwise
# prints train.py's one-line explanation (the differing flags and their recorded values).
same_config() {
    local out
    job_command "$1" "$2" check
    out=$("${CMD[@]}" 2>&1 >/dev/null) && return 0
    echo "${out##*$'\n'}"
    return 1
}

# job_state NAME FLAGS -> prints "skip <reason>", "fail <reason>", "start", "resume" or "sop".
job_state() {
    local run_dir="$OUT_DIR/$1" why
    if [[ -n $SOP_MODE ]]; then
        if [[ -f $run_dir/sop.json ]] && grep -q "\"$SOP_MODE\":" "$run_dir/sop.json"; then
            echo "skip (SOPs counted: $run_dir/sop.json)"
        elif [[ ! -f $run_dir/summary.json && $DRY_RUN != 1 ]]; then
            echo "fail (not finished: no $run_dir/summary.json)"
        else
            echo sop
        fi
    elif [[ -f $run_dir/summary.json || -f $run_dir/checkpoint_latest.pt ]]; then
        if ! why=$(same_config "$1" "$2"); then
            echo "fail (recorded configuration differs from the requested one: $why)"
        elif [[ -f $run_dir/summary.json ]]; then
            echo "skip (finished with the same configuration: $run_dir/summary.json)"
        else
            echo resume
        fi
    else
        echo start
    fi
}

# job_command NAME FLAGS STATE -> fills the array CMD (train.py command line with extra args and run-dir flags).
job_command() {
    local -a flags
    read -r -a flags <<<"$2"
    # shellcheck disable=SC2153  # TASK is set by the sourcing script
    CMD=("$PYTHON" "$(script_path "${JOB_SCRIPT:-$TASK/train.py}")" "${flags[@]}" "${EXTRA[@]}")
    case $3 in
        sop) CMD+=(--sop --sop-mode "$SOP_MODE" --resume "$OUT_DIR/$1") ;;
        resume) CMD+=(--resume "$OUT_DIR/$1") ;;
        check) CMD+=(--resume "$OUT_DIR/$1" --check-config) ;;
        *) CMD+=(--out-dir "$OUT_DIR" --run-name "$1") ;;
    esac
}

_quoted() {
    local out
    printf -v out '%q ' "$@"
    echo "${out% }"
}

_log() {
    echo "$OUT_DIR/logs/$1${SOP_MODE:+.sop}.log"
}

_finish_job() {  # NAME RC
    if [[ $2 == 0 ]]; then
        N_DONE=$((N_DONE + 1))
        echo "done    $1"
    else
        N_FAILED=$((N_FAILED + 1))
        echo "FAILED  $1 (exit $2; log: $(_log "$1"))" >&2
    fi
}

# run_queue: run (or print) every queued job, then empty the queue.
run_queue() {
    local -a gpus=()
    [[ -n ${CUDA_VISIBLE_DEVICES:-} ]] && mapfile -t gpus < <(split_list "$CUDA_VISIBLE_DEVICES")
    local parallel=$(( ${#gpus[@]} > 1 ))
    local -A running=()  # gpu -> pid
    local -A job_of=()   # pid -> run name
    local i name state gpu pid rc
    [[ $DRY_RUN == 1 ]] || mkdir -p "$OUT_DIR/logs"
    trap '[[ ${#running[@]} -gt 0 ]] && kill "${running[@]}" 2>/dev/null; exit 130' INT TERM
    for i in "${!JOB_NAMES[@]}"; do
        name=${JOB_NAMES[$i]}
        JOB_SCRIPT=${JOB_SCRIPTS[$i]}
        state=$(job_state "$name" "${JOB_ARGS[$i]}")
        case $state in
            skip*) N_SKIPPED=$((N_SKIPPED + 1)); echo "skip    $name ${state#skip }"; continue ;;
            fail*) N_FAILED=$((N_FAILED + 1)); echo "FAILED  $name ${state#fail }" >&2; continue ;;
        esac
        job_command "$name" "${JOB_ARGS[$i]}" "$state"
        if (( parallel )); then
            while (( ${#running[@]} >= ${#gpus[@]} )) && [[ $DRY_RUN != 1 ]]; do
                wait -n 2>/dev/null || true
                for gpu in "${!running[@]}"; do
                    pid=${running[$gpu]}
                    kill -0 "$pid" 2>/dev/null && continue
                    rc=0
                    wait "$pid" || rc=$?
                    _finish_job "${job_of[$pid]}" "$rc"
                    unset "running[$gpu]"
                done
            done
            for gpu in "${gpus[@]}"; do [[ -z ${running[$gpu]:-} ]] && break; done
            printf '%-7s %s [gpu %s]: CUDA_VISIBLE_DEVICES=%s %s\n' "$state" "$name" "$gpu" "$gpu" \
                "$(_quoted "${CMD[@]}")"
            if [[ $DRY_RUN == 1 ]]; then
                running[$gpu]=dry
                (( ${#running[@]} >= ${#gpus[@]} )) && running=()
                continue
            fi
            CUDA_VISIBLE_DEVICES=$gpu "${CMD[@]}" >"$(_log "$name")" 2>&1 &
            running[$gpu]=$!
            job_of[$!]=$name
        else
            printf '%-7s %s: %s\n' "$state" "$name" "$(_quoted "${CMD[@]}")"
            [[ $DRY_RUN == 1 ]] && continue
            rc=0
            { "${CMD[@]}" 2>&1 | tee "$(_log "$name")"; rc=${PIPESTATUS[0]}; } || true
            _finish_job "$name" "$rc"
        fi
    done
    if [[ $DRY_RUN != 1 ]]; then
        for gpu in "${!running[@]}"; do
            pid=${running[$gpu]}
            rc=0
            wait "$pid" || rc=$?
            _finish_job "${job_of[$pid]}" "$rc"
        done
    fi
    trap - INT TERM
    JOB_NAMES=()
    JOB_ARGS=()
    JOB_SCRIPTS=()
}

# sweep_summary: one closing line; exit status 1 if a job failed.
sweep_summary() {
    if [[ $DRY_RUN == 1 ]]; then
        echo "dry run: nothing was started ($N_SKIPPED skipped); run dirs under $OUT_DIR"
        return 0
    fi
    echo "sweep: $N_DONE done, $N_SKIPPED skipped, $N_FAILED failed; run dirs under $OUT_DIR"
    (( N_FAILED == 0 ))
}
