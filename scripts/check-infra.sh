#!/usr/bin/env bash
# Checks infra/: every .bicep file builds and lints with no error and no warning, and infra/main.json
# is exactly what `bicep build infra/main.bicep` makes (so the committed template the tests read cannot
# go stale). `scripts/check-infra.sh --write` rewrites infra/main.json after a change to the .bicep files.
# Installs the Bicep CLI first (scripts/install-bicep.sh). Needs no Azure subscription.
set -euo pipefail
cd "$(dirname "$0")/.."

bicep=$(bash scripts/install-bicep.sh)
"$bicep" --version
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

mapfile -t files < <(find infra -name '*.bicep' | sort)
for file in "${files[@]}"; do
  out="$work/$(echo "$file" | tr '/' '_').json"
  # Diagnostics go to stderr; any line there (a warning included) fails the check.
  if ! "$bicep" build "$file" --outfile "$out" 2>"$work/build.log" || [[ -s "$work/build.log" ]]; then
    echo "bicep build $file: not clean" >&2; cat "$work/build.log" >&2; failed=1
  fi
  if ! "$bicep" lint "$file" >"$work/lint.log" 2>&1 || [[ -s "$work/lint.log" ]]; then
    echo "bicep lint $file: not clean" >&2; cat "$work/lint.log" >&2; failed=1
  fi
done
echo "bicep build and lint: ${#files[@]} files"

"$bicep" build infra/main.bicep --outfile "$work/main.json" 2>/dev/null
if [[ "${1:-}" == "--write" ]]; then
  cp "$work/main.json" infra/main.json
  echo "infra/main.json rewritten"
elif ! cmp -s "$work/main.json" infra/main.json; then
  echo "infra/main.json differs from 'bicep build infra/main.bicep': run scripts/check-infra.sh --write and commit it" >&2
  diff <(head -c 2000 infra/main.json) <(head -c 2000 "$work/main.json") >&2 || true
  failed=1
else
  echo "infra/main.json is the build of infra/main.bicep"
fi
exit "$failed"
