#!/usr/bin/env bash
# The action's run step (tested by tests/test_action.py): each command of
# $BABYSIT_COMMANDS on $BABYSIT_RECIPE, reports into $BABYSIT_REPORTS as
# <command>.xml (JUnit) and <command>.json, extra options $BABYSIT_ARGS.
# Runs every command, then exits with the worst code seen (130 > 2 > 1 > 0).
set -uo pipefail
recipe="${BABYSIT_RECIPE:-two-layer-digits}"
reports="${BABYSIT_REPORTS:-babysit-reports}"
commands="${BABYSIT_COMMANDS:-sanity-loss gradcheck lr-probe}"
read -r -a extra <<< "${BABYSIT_ARGS:-}"
worst=0
for command in ${commands//,/ }; do
    echo "::group::babysit $command $recipe"
    babysit "$command" "$recipe" --junit "$reports/$command.xml" --json "$reports/$command.json" \
        ${extra[@]+"${extra[@]}"}
    code=$?
    echo "::endgroup::"
    if [ "$code" -ne 0 ]; then
        echo "::error title=babysit $command::exit code $code (1: a diagnosis failed, 2: bad input)"
    fi
    if [ "$code" -gt "$worst" ]; then
        worst=$code
    fi
done
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    echo "report-dir=$reports" >> "$GITHUB_OUTPUT"
fi
echo "babysit reports in $reports: $(ls "$reports" 2>/dev/null | tr '\n' ' ')"
exit "$worst"
