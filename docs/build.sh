#!/usr/bin/env bash
# Builds the documentation site in strict mode (any warning fails), after checking that the generated
# pages, diagrams and schemas match the code. Needs the docs extra: pip install -e '.[docs]'.
#   bash docs/build.sh            -> site/
#   bash docs/build.sh OUT_DIR    -> OUT_DIR/
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_MKDOCS_2_WARNING=1  # mkdocs-material's banner about MkDocs 2
python="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
"$python" -m run_mailbox.reference --check
"$python" -m mkdocs build --strict --site-dir "${1:-site}"
