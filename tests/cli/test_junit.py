"""JUnit XML: structure CI reporters read, counts, escaping, determinism."""

import xml.etree.ElementTree as ET

from babysit.cli.junit import junit_cases, junit_xml
from babysit.diagnostics.result import Result


def _parse(result, strict=False):
    data = junit_xml(result, strict=strict)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(data)


def _gradcheck_result():
    result = Result("gradcheck", recipe="bundled:two-layer-digits", seed=0)
    result.checks = {"param 0.W": ["gradient_mismatch"], "param 0.b": [],
                     "input": ["gradient_suspicious", "kink_crossed"]}
    result.add("gradient_mismatch", "fail", "0.W rel error 3e-1", fix="check backward",
               layer="0.affine")
    result.add("gradient_mismatch", "fail", "0.W second entry off", layer="0.affine")
    result.add("gradient_suspicious", "warn", "input rel error 1e-3")
    result.add("kink_crossed", "info", "2 entries crossed a ReLU kink")
    return result


def test_one_testcase_per_check_with_failure_and_system_out():
    root = _parse(_gradcheck_result())
    suite = root.find("testsuite")
    assert suite.get("name") == "babysit.gradcheck"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["param 0.W", "param 0.b", "input"]
    assert {c.get("classname") for c in cases} == {"babysit.gradcheck"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("3", "1", "0", "0")
    (failure,) = cases[0].findall("failure")
    assert failure.get("type") == "gradient_mismatch"
    assert failure.get("message").startswith("2 findings")
    assert "check backward" in failure.text and "second entry off" in failure.text
    assert cases[1].find("failure") is None and cases[1].find("system-out") is None
    out = cases[2].find("system-out").text
    assert "gradient_suspicious" in out and "kink_crossed" in out
    assert root.get("tests") == "3" and root.get("failures") == "1"


def test_strict_turns_warnings_into_failures():
    root = _parse(_gradcheck_result(), strict=True)
    input_case = root.findall(".//testcase")[2]
    assert input_case.find("failure").get("type") == "gradient_suspicious"
    assert "kink_crossed" in input_case.find("system-out").text  # info stays output
    assert root.get("failures") == "2"


def test_without_checks_one_case_per_code_plus_the_command():
    result = Result("lr-probe")
    result.add("lr_too_high", "fail", "loss exploded at lr=1")
    result.add("lr_range_edge", "warn", "best lr at edge")
    result.add("lr_too_high", "fail", "loss NaN at lr=10")
    names = [name for name, _ in junit_cases(result)]
    assert names == ["lr_too_high", "lr_range_edge", "lr-probe"]
    root = _parse(result)
    assert root.find("testsuite").get("failures") == "1"
    assert root.find("testsuite").get("tests") == "3"
    clean = _parse(Result("lr-probe"))
    assert [c.get("name") for c in clean.iter("testcase")] == ["lr-probe"]
    assert clean.get("failures") == "0"


def test_findings_no_check_claims_are_kept():
    result = Result("sanity-loss")
    result.checks = {"initial loss": ["initial_loss_unexpected"]}
    result.add("reg_no_effect", "fail", "loss did not rise with reg")
    cases = dict(junit_cases(result))
    assert list(cases) == ["initial loss", "sanity-loss"]
    assert cases["sanity-loss"][0].code == "reg_no_effect"
    assert _parse(result).get("failures") == "1"


def test_doctor_gets_one_suite_per_part():
    doctor = Result("doctor")
    sanity = Result("sanity-loss")
    sanity.add("initial_loss_unexpected", "fail", "loss 9.1, expected 2.30")
    overfit = Result("overfit-tiny")
    doctor.parts = {"sanity-loss": sanity, "overfit-tiny": overfit}
    root = _parse(doctor)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["babysit.sanity-loss", "babysit.overfit-tiny"]
    assert root.get("tests") == "3" and root.get("failures") == "1"


def test_escaping_and_control_characters_make_valid_xml():
    result = Result("data")
    result.add("data_not_finite", "fail", 'X <has> & "NaN"\x00\x1b[31m', fix="drop rows\nor impute")
    root = _parse(result)
    failure = root.find(".//failure")
    assert failure.get("message") == 'X <has> & "NaN"??[31m'
    assert "drop rows\nor impute" in failure.text


def test_output_is_deterministic():
    assert junit_xml(_gradcheck_result()) == junit_xml(_gradcheck_result())
    assert b"timestamp" not in junit_xml(_gradcheck_result())
