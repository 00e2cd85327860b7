"""JUnit XML for CI test reporters (Jenkins, GitLab, GitHub actions).

Layout::

    <testsuites name="babysit" tests= failures= errors= time="0">
      <testsuite name="babysit.<command>" tests= failures= errors= skipped= time="0">
        <testcase classname="babysit.<command>" name="<check>" time="0">
          <failure message="<first failing message>" type="<finding code>">
            every finding of the check with its fix</failure>
          <system-out>warnings and notes</system-out>
        </testcase>

One testcase per check of ``result.checks`` (check name -> finding codes); a
result without checks gets one testcase per finding code plus one named after
the command. Findings that no check claims land in the command's testcase, so
nothing is lost. Warnings are ``<system-out>`` (failures with ``--strict``).
A result with parts (doctor) gets one testsuite per part, plus a skipped
testsuite for each part it did not run (its ``not_run`` metric, from
``--stop-early``). Times are always "0": the same result gives the same bytes.

A command that stopped (``result.stopped``: exit 2 or 130) gets one testsuite
whose testcase carries ``<error type="error|interrupted" message=...>``, named
after the part that was running (doctor) or the command; a doctor's finished
parts keep their testsuites and the parts it never reached are skipped.

The document validates against the Jenkins xUnit plugin's JUnit schema
(junit-10.xsd; tests/data/junit-jenkins-subset.xsd is the part of it babysit
uses): ``skipped`` counts are an attribute of each ``<testsuite>`` only, the
schema rejects it on the root ``<testsuites>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# XML 1.0 forbids most control characters even when escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text) -> str:
    return _INVALID_XML.sub("?", str(text))


def junit_xml(result, strict: bool = False) -> bytes:
    """The JUnit XML document for ``result`` (UTF-8 bytes with declaration)."""
    root = ET.Element("testsuites", name="babysit")
    suites = []
    if result.parts or result.stopped:
        if result.findings:
            suites.append(_suite(result, strict))
        suites += [_suite(part, strict) for part in result.parts.values()]
        if result.stopped:
            suites.append(_stopped_suite(result))
        reason = (f"{result.command} stopped ({result.stopped}) before this part" if result.stopped
                  else "--stop-early after a failing part")
        suites += [_skipped_suite(command, reason) for command in result.metrics.get("not_run", ())]
    else:
        suites.append(_suite(result, strict))
    for suite in suites:
        root.append(suite)
    for key in ("tests", "failures", "errors"):  # no "skipped" here: the schema forbids it
        root.set(key, str(sum(int(s.get(key)) for s in suites)))
    root.set("time", "0")
    tree = ET.ElementTree(root)
    ET.indent(tree, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def junit_cases(result) -> list[tuple[str, list]]:
    """(testcase name, findings) in order: one per check, or per code + the command."""
    findings = list(result.findings)
    cases = []
    claimed = set()
    if result.checks:
        for name, codes in result.checks.items():
            codes = [codes] if isinstance(codes, str) else list(codes)
            members = [f for f in findings if f.code in codes]
            claimed.update(id(f) for f in members)
            cases.append((name, members))
    else:
        for code in dict.fromkeys(f.code for f in findings):
            members = [f for f in findings if f.code == code]
            claimed.update(id(f) for f in members)
            cases.append((code, members))
    leftovers = [f for f in findings if id(f) not in claimed]
    if leftovers or not result.checks:
        cases.append((result.command, leftovers))
    return cases


def _suite(result, strict: bool) -> ET.Element:
    classname = f"babysit.{result.command}"
    suite = ET.Element("testsuite", name=classname)
    failures = 0
    cases = junit_cases(result)
    for name, findings in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=_clean(name), time="0")
        failing = [f for f in findings if f.severity == "fail" or (strict and f.severity == "warn")]
        failing_ids = {id(f) for f in failing}
        others = [f for f in findings if id(f) not in failing_ids]
        if failing:
            failures += 1
            first = failing[0]
            message = first.message if len(failing) == 1 else \
                f"{len(failing)} findings; first: {first.message}"
            failure = ET.SubElement(case, "failure", message=_clean(message), type=first.code)
            failure.text = _clean("\n".join(_describe(f) for f in failing))
        if others:
            out = ET.SubElement(case, "system-out")
            out.text = _clean("\n".join(_describe(f) for f in others))
    _set_counts(suite, tests=len(cases), failures=failures, skipped=0)
    return suite


def _skipped_suite(command: str, reason: str) -> ET.Element:
    """The testsuite of a part that was not run: one skipped testcase named after it."""
    classname = f"babysit.{command}"
    suite = ET.Element("testsuite", name=classname)
    case = ET.SubElement(suite, "testcase", classname=classname, name=command, time="0")
    ET.SubElement(case, "skipped", message=_clean(f"not run: {reason}"))
    _set_counts(suite, tests=1, failures=0, skipped=1)
    return suite


def _stopped_suite(result) -> ET.Element:
    """The testsuite of a command that stopped: one testcase with an ``<error>``.

    Named after the part that was running when a doctor stopped (its status in
    ``metrics["statuses"]`` is the stop's), else after the command.
    """
    statuses = result.metrics.get("statuses") or {}
    name = next((part for part, status in statuses.items() if status == result.stopped),
                result.command)
    classname = f"babysit.{name}"
    suite = ET.Element("testsuite", name=classname)
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    error = ET.SubElement(case, "error", message=_clean(result.error or result.stopped),
                          type=result.stopped)
    error.text = _clean(result.error or result.stopped)
    _set_counts(suite, tests=1, failures=0, skipped=0, errors=1)
    return suite


def _set_counts(suite: ET.Element, tests: int, failures: int, skipped: int,
                errors: int = 0) -> None:
    # Attribute order as reporters print it: name, tests, failures, errors, skipped, time.
    suite.attrib = {"name": suite.get("name"), "tests": str(tests), "failures": str(failures),
                    "errors": str(errors), "skipped": str(skipped), "time": "0"}


def _describe(finding) -> str:
    where = f" ({finding.layer})" if finding.layer else ""
    line = f"[{finding.severity}] {finding.code}{where}: {finding.message}"
    if finding.fix:
        line += f"\n  fix: {finding.fix}"
    return line
