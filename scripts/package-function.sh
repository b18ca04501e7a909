#!/usr/bin/env bash
# Lays out the Function App's deployment package in dist/package/: package.json, package-lock.json,
# host.json, the compiled app (dist/src) and the production dependencies only (not the emulators,
# compilers and Node binary among the dev dependencies). `npm run package` runs it; azd runs that script
# before it zips dist/package (azure.yaml), and docs/deploy.md zips it for `az functionapp deployment`.
# Needs `npm run build` first (npm ci runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist/package
if [[ ! -f dist/src/functions/register.js ]]; then
  echo "package-function: dist/src/functions/register.js is missing: run npm run build first" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/dist"
cp package.json package-lock.json host.json "$out/"
cp -r dist/src "$out/dist/src"
find "$out/dist/src" -name '*.map' -delete
(cd "$out" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "package-function: $out ($(du -sh "$out" | cut -f1)), main $(node -p "require('./$out/package.json').main")"
