#!/usr/bin/env bash
# Installs everything paychan needs on a fresh machine (Python 3.11+, Node 20+, npm), idempotently:
# a Python venv in .venv with the package and its pinned dependencies, and the pinned npm packages
# (the solc compiler, solady, anvil, solhint) in node_modules. Nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
command -v node >/dev/null || { echo "setup: Node.js 20+ is needed (the Solidity compiler and anvil come from npm)" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' || { echo "setup: Node.js 20+ is needed (found $(node --version))" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: npm is needed" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python 3.11+ is needed" >&2; exit 1; }

if [ ! -d node_modules/solc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.paychan-installed ] || [ pyproject.toml -nt .venv/.paychan-installed ] || [ constraints.txt -nt .venv/.paychan-installed ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test,ape]'
  touch .venv/.paychan-installed
fi
echo "setup: ready (.venv/bin/paychan, node_modules/.bin/anvil)"
