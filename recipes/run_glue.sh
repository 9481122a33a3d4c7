#!/usr/bin/env bash
# Distil the GLUE recipes one after the other, each into RUNS_DIR/<task>, then print the results
# table. Flags after the task names (or after --) are passed to every `nlpkd distill` call.
#
#   recipes/run_glue.sh                                   # all nine tasks
#   recipes/run_glue.sh sst2 mrpc                         # only these
#   recipes/run_glue.sh rte mrpc --fp16                   # extra flags for every run
#   RUNS_DIR=runs/glue-seed1 recipes/run_glue.sh --seed 1  # another seed, in its own folder
#
# A task whose folder already holds a finished run (metrics.json) is skipped, so after a failure
# the same command picks up where it stopped (use a new RUNS_DIR for a sweep with other settings,
# or pass --overwrite_output_dir to redo finished runs). The sweep stops at the first run that
# fails, with that run's exit status.
#
# Environment:
#   RUNS_DIR  where the runs go (default: runs/glue, relative to the current folder)
#   NLPKD     the command that runs nlpkd (default: `nlpkd`, else `python -m nlpkd`)
#   PYTHON    the interpreter for the results table (default: python, else python3)
set -euo pipefail

recipes_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
all_tasks=(cola sst2 mrpc stsb qqp mnli qnli rte wnli)
runs_dir="${RUNS_DIR:-runs/glue}"

usage() {
  # The comment block at the top of this file, without its '# ' prefixes.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

say() {
  echo "[run_glue] $*"
}

fail() {
  echo "[run_glue] error: $*" >&2
  exit 2
}

python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
  python_bin="$(command -v python || command -v python3 || true)"
fi
if [[ -n "${NLPKD:-}" ]]; then
  # Split on spaces on purpose: NLPKD may be a command with arguments, e.g. "python -m nlpkd".
  read -r -a nlpkd_cmd <<<"$NLPKD"
elif command -v nlpkd >/dev/null 2>&1; then
  nlpkd_cmd=(nlpkd)
elif [[ -n "$python_bin" ]]; then
  nlpkd_cmd=("$python_bin" -m nlpkd)
else
  fail "neither the nlpkd command nor python was found: install nlpkd (pip install nlpkd) or set NLPKD."
fi

tasks=()
extra=()
while (($# > 0)); do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      extra+=("$@")
      break
      ;;
    -*)
      extra+=("$@")
      break
      ;;
    *)
      [[ -f "$recipes_dir/glue/$1.yaml" ]] ||
        fail "unknown task '$1': the recipes are ${all_tasks[*]} (task names come before any flag)."
      tasks+=("$1")
      shift
      ;;
  esac
done
if ((${#tasks[@]} == 0)); then
  tasks=("${all_tasks[@]}")
fi

overwrite=0
for flag in ${extra[@]+"${extra[@]}"}; do
  if [[ "$flag" == --overwrite_output_dir || "$flag" == --overwrite-output-dir ]]; then
    overwrite=1
  fi
done

outputs=()
for index in "${!tasks[@]}"; do
  task="${tasks[$index]}"
  output_dir="$runs_dir/$task"
  if [[ -f "$output_dir/metrics.json" && $overwrite == 0 ]]; then
    say "$task: $output_dir already holds a finished run; skipped (pass --overwrite_output_dir to redo it)."
    outputs+=("$output_dir")
    continue
  fi
  say "($((index + 1))/${#tasks[@]}) $task -> $output_dir"
  status=0
  "${nlpkd_cmd[@]}" distill --config "$recipes_dir/glue/$task.yaml" --output_dir "$output_dir" \
    ${extra[@]+"${extra[@]}"} || status=$?
  if ((status != 0)); then
    remaining=("${tasks[@]:index+1}")
    echo "[run_glue] error: $task failed with exit status $status (its output is above); stopped." \
      "Not run: ${remaining[*]:-none}. Fix the cause and rerun the same command: finished runs are" \
      "skipped." >&2
    exit "$status"
  fi
  outputs+=("$output_dir")
done

say "done: ${tasks[*]}"
if [[ -n "$python_bin" ]]; then
  "$python_bin" "$recipes_dir/results_table.py" "${outputs[@]}"
else
  say "python not found: make the table with python recipes/results_table.py $runs_dir"
fi
