"""JUnit XML: structure CI reporters read, counts, escaping, determinism."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

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


def _stopped_doctor():
    doctor = Result("doctor", recipe="bundled:broken/zero-init", seed=0)
    sanity = Result("sanity-loss", recipe="bundled:broken/zero-init", seed=0)
    sanity.checks = {"initial loss": ["initial_loss_unexpected"], "symmetry": ["symmetric_weights"]}
    sanity.add("symmetric_weights", "fail", 'all hidden units <identical> & "same"',
               fix="use xavier\nor he", layer="0.affine")
    sanity.add("initial_loss_unexpected", "warn", "loss 2.5, expected 2.30")
    doctor.parts = {"sanity-loss": sanity}
    doctor.metrics = {"statuses": {"sanity-loss": "fail", "gradcheck": "not run",
                                   "overfit-tiny": "not run"},
                      "not_run": ["gradcheck", "overfit-tiny"]}
    return doctor


# What `doctor --stop-early --junit` wrote when it re-parsed the shared writer's XML
# to add the skipped suites: the shared writer now gives these very bytes itself.
STOPPED_DOCTOR_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="babysit" tests="4" failures="1" errors="0" time="0">
  <testsuite name="babysit.sanity-loss" tests="2" failures="1" errors="0" skipped="0" time="0">
    <testcase classname="babysit.sanity-loss" name="initial loss" time="0">
      <system-out>[warn] initial_loss_unexpected: loss 2.5, expected 2.30</system-out>
    </testcase>
    <testcase classname="babysit.sanity-loss" name="symmetry" time="0">
      <failure message="all hidden units &lt;identical&gt; &amp; &quot;same&quot;" type="symmetric_weights">[fail] symmetric_weights (0.affine): all hidden units &lt;identical&gt; &amp; "same"
  fix: use xavier
or he</failure>
    </testcase>
  </testsuite>
  <testsuite name="babysit.gradcheck" tests="1" failures="0" errors="0" skipped="1" time="0">
    <testcase classname="babysit.gradcheck" name="gradcheck" time="0">
      <skipped message="not run: --stop-early after a failing part" />
    </testcase>
  </testsuite>
  <testsuite name="babysit.overfit-tiny" tests="1" failures="0" errors="0" skipped="1" time="0">
    <testcase classname="babysit.overfit-tiny" name="overfit-tiny" time="0">
      <skipped message="not run: --stop-early after a failing part" />
    </testcase>
  </testsuite>
</testsuites>
"""


def test_doctor_parts_not_run_get_a_skipped_suite_each():
    assert junit_xml(_stopped_doctor()) == STOPPED_DOCTOR_XML.encode("utf-8")
    root = _parse(_stopped_doctor(), strict=True)
    assert [s.get("name") for s in root.findall("testsuite")] == [
        "babysit.sanity-loss", "babysit.gradcheck", "babysit.overfit-tiny"]
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "2", None)
    assert sum(int(suite.get("skipped")) for suite in root.findall("testsuite")) == 2


# -- the Jenkins/xUnit schema ---------------------------------------------------------

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "junit-jenkins-subset.xsd"


@pytest.fixture(scope="module")
def schema():
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema comes with the test extra")
    return xmlschema.XMLSchema(str(SCHEMA))


def _doctor_with_every_part():
    doctor = _stopped_doctor()
    doctor.parts["gradcheck"] = _gradcheck_result()
    return doctor


@pytest.mark.parametrize("make", [_gradcheck_result, _stopped_doctor, _doctor_with_every_part,
                                  lambda: Result("sanity-loss", recipe="r", seed=0)],
                         ids=["checks", "stopped-doctor", "doctor", "empty"])
@pytest.mark.parametrize("strict", [False, True])
def test_documents_validate_against_the_jenkins_junit_schema(schema, make, strict):
    schema.validate(junit_xml(make(), strict=strict).decode("utf-8"))


def test_the_schema_rejects_skipped_on_the_root(schema):
    """The defect this guards against: Jenkins rejects <testsuites skipped=...>."""
    bad = junit_xml(_stopped_doctor()).replace(b'<testsuites name="babysit"',
                                               b'<testsuites name="babysit" skipped="2"')
    assert not schema.is_valid(bad.decode("utf-8"))


def test_a_real_doctor_report_validates(schema, tmp_path):
    from click.testing import CliRunner

    from babysit.cli import cli

    path = tmp_path / "doctor.xml"
    result = CliRunner().invoke(cli, ["doctor", "broken/zero-init", "--stop-early", "--junit",
                                      str(path), "-q"])
    assert result.exit_code == 1, result.output
    schema.validate(str(path))
