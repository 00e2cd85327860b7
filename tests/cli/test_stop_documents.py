"""Exit 2 and 130 still write --json and --junit (issue 10 item 9): CI reporters find a
document saying error/interrupted, with the message and, for doctor, the parts already done."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.errors import DataError
from tests.helpers import device_node


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})


SCHEMA = Path(__file__).resolve().parents[1] / "data" / "junit-jenkins-subset.xsd"


def junit(path):
    """The parsed JUnit document, checked against the Jenkins schema when xmlschema is there."""
    try:
        import xmlschema
    except ImportError:
        pass
    else:
        xmlschema.XMLSchema(str(SCHEMA)).validate(str(path))
    return ET.parse(path).getroot()


def test_a_usage_error_writes_error_documents(tmp_path):
    out, xml = tmp_path / "r.json", tmp_path / "r.xml"
    result = run("sanity-loss", "--set", "model.layers.0.affine.out=0", "--json", out, "--junit", xml)
    assert result.exit_code == 2
    message = result.stderr.strip().removeprefix("error: ")
    doc = json.loads(out.read_text())
    assert doc["status"] == "error" and doc["error"] == message
    assert doc["command"] == "sanity-loss" and doc["recipe"] == "two-layer-digits"
    assert doc["findings"] == [] and doc["metrics"] == {}
    root = junit(xml)
    assert (root.get("tests"), root.get("errors"), root.get("failures")) == ("1", "1", "0")
    error = root.find("testsuite/testcase/error")
    assert error.get("type") == "error" and error.get("message") == message


def test_the_error_documents_create_their_folders_like_any_output(tmp_path):
    out, xml = tmp_path / "new" / "r.json", tmp_path / "other" / "deep" / "r.xml"
    result = run("sanity-loss", "--set", "model.layers.0.affine.out=0", "--json", out, "--junit", xml)
    assert result.exit_code == 2
    assert json.loads(out.read_text())["status"] == "error"
    assert junit(xml).get("errors") == "1"


def test_the_error_document_can_go_to_stdout(tmp_path):
    result = run("train", "--resume", tmp_path / "missing.h5", "--json", "-")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and "does not exist" in doc["error"]
    assert doc["command"] == "train"


@pytest.fixture
def doctor_stopping_at(monkeypatch):
    """Make one doctor part raise ``exc`` (the others run for real)."""
    from babysit.diagnostics import doctor as doctor_module

    real = doctor_module.part_function

    def stop_at(command, exc):
        def part_function(name):
            if name != command:
                return real(name)

            def stopping(recipe, seed=None):
                raise exc
            return stopping

        monkeypatch.setattr(doctor_module, "part_function", part_function)

    return stop_at


@pytest.mark.parametrize("exc, status, code", [
    (KeyboardInterrupt(), "interrupted", 130),
    (DataError("the data went away"), "error", 2),
])
def test_a_stopped_doctor_reports_the_parts_already_done(doctor_stopping_at, tmp_path,
                                                         exc, status, code):
    doctor_stopping_at("overfit-tiny", exc)
    out, xml = tmp_path / "d.json", tmp_path / "d.xml"
    result = run("doctor", "--json", out, "--junit", xml, "-q")
    assert result.exit_code == code, result.output
    doc = json.loads(out.read_text())
    assert doc["status"] == status and doc["error"] == ("interrupted" if code == 130
                                                        else "the data went away")
    assert list(doc["parts"]) == ["sanity-loss", "gradcheck"]
    assert doc["parts"]["sanity-loss"]["status"] == "pass"
    assert doc["metrics"]["statuses"] == {"sanity-loss": "pass", "gradcheck": "pass",
                                          "overfit-tiny": status, "init-stats": "not run",
                                          "lr-probe": "not run"}
    suites = {s.get("name"): s for s in junit(xml).findall("testsuite")}
    assert list(suites) == ["babysit.sanity-loss", "babysit.gradcheck", "babysit.overfit-tiny",
                            "babysit.init-stats", "babysit.lr-probe"]
    assert suites["babysit.overfit-tiny"].find("testcase/error").get("type") == status
    assert suites["babysit.lr-probe"].find("testcase/skipped") is not None
    assert junit(xml).get("errors") == "1"


def test_an_output_that_fails_turns_the_documents_into_errors(tmp_path):
    out, full = tmp_path / "r.json", device_node(tmp_path, "full")
    result = run("sanity-loss", "--json", out, "--junit", full, "-q")
    assert result.exit_code == 2 and "No space left" in result.stderr
    doc = json.loads(out.read_text())      # the report is kept, and agrees with the exit code
    assert doc["status"] == "error" and f"cannot write JUnit XML to {full}" in doc["error"]
    assert doc["metrics"]["initial_loss"] > 0


def test_a_successful_run_has_no_error_key(tmp_path):
    out = tmp_path / "r.json"
    assert run("sanity-loss", "--json", out, "-q").exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["status"] == "pass" and "error" not in doc
