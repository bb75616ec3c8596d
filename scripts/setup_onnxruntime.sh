#!/usr/bin/env bash
# Installs ONNX Runtime for the ONNX tests: the npm package onnxruntime-node (version pinned in
# tools/onnx/package.json, every dependency locked by tools/onnx/package-lock.json) into
# .cache/onnxruntime. Idempotent: does nothing when that version is already there.
# Needs only the npm registry: onnxruntime-node 1.20.1 ships its CPU binaries (linux x64/arm64)
# inside the npm tarball; its postinstall script would download the CUDA
# provider from GitHub, which ONNXRUNTIME_NODE_INSTALL_CUDA=skip turns off.
# Without node/npm it prints why and exits 0 (the ONNX Runtime tests then skip, saying so).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${SQ_ORT_DIR:-$ROOT/.cache/onnxruntime}"
PKG="$ROOT/tools/onnx/package.json"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup_onnxruntime.sh: node/npm not found; ONNX Runtime tests will be skipped" >&2
  exit 0
fi
# Tests running in parallel may call this at once: one installs, the others wait and then see it.
mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
command -v flock >/dev/null 2>&1 && flock 9
want="$(node -p "require('$PKG').dependencies['onnxruntime-node']")"
have="$(node -p "try { require('$DEST/node_modules/onnxruntime-node/package.json').version } catch (e) { '' }" 2>/dev/null || true)"
if [ "$have" = "$want" ] && node -e "require('$DEST/node_modules/onnxruntime-node')" >/dev/null 2>&1; then
  exit 0
fi
echo "setup_onnxruntime.sh: installing onnxruntime-node $want into $DEST"
mkdir -p "$DEST"
cp "$PKG" "$DEST/package.json"
cp "$ROOT/tools/onnx/package-lock.json" "$DEST/package-lock.json"  # every dependency pinned
cd "$DEST"
ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund --loglevel=error
node -e "require('$DEST/node_modules/onnxruntime-node')"
echo "setup_onnxruntime.sh: onnxruntime-node $want ready"
