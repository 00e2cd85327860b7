#!/usr/bin/env bash
# The action's install step: pip install $BABYSIT_INSTALL, or the action's own checkout.
set -euo pipefail
target="${BABYSIT_INSTALL:-}"
if [ -z "$target" ]; then
    target="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}[plot]"
fi
python -m pip install --quiet "$target"
babysit --version
