#!/usr/bin/env bash
# Run a long grid from a git worktree at the current commit, so that edits made while it runs do not leak into
# half of its runs: scripts/grid_worktree.sh <python module> [args...]
# The worktree is .grid/<commit>/ (reused when it exists, so a resumed grid keeps its code); the main checkout's
# venv runs it. Give the grid absolute paths for its outputs, caches and data (the Makefile does).
# GRID_COMMIT=<sha> resumes a grid started at an older commit (default: HEAD, which must have no uncommitted changes).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
sha=$(git -C "$root" rev-parse "${GRID_COMMIT:-HEAD}")
if [ -z "${GRID_COMMIT:-}" ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "uncommitted changes in $root: commit them first (the grid runs the committed code at ${sha:0:12})" >&2
  exit 2
fi
wt="$root/.grid/${sha:0:12}"
if [ ! -d "$wt" ]; then
  git -C "$root" worktree add --detach "$wt" "$sha" >/dev/null
fi
echo "grid code: $wt (commit $sha)"
cd "$wt"
exec env PYTHONPATH="$wt" "$root/.venv/bin/python" -m "$@"
