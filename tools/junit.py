"""JUnit XML results (`pvboot boot --junit FILE`): one <testsuite>, one <testcase> per
boot with <failure>/<error> and the console in <system-out>.  Bytes XML 1.0 cannot
carry are written as Unicode control pictures (ESC -> U+241B), so the file always
parses.
"""
import datetime
import re
import socket
import xml.etree.ElementTree as ET

from pvboot.tools import report

SUITE_NAME = "pvboot"
CLASSNAME = "pvboot"

# Characters XML 1.0 does not allow (tab, LF and CR are allowed).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text):
    """`text` with every character XML 1.0 cannot hold replaced by a visible stand-in."""
    def picture(match):
        char = match.group()
        return chr(0x2400 + ord(char)) if ord(char) < 0x20 else "\ufffd"
    return _NOT_XML.sub(picture, text)


def _properties(parent, pairs):
    props = ET.SubElement(parent, "properties")
    for name, value in pairs:
        ET.SubElement(props, "property", name=name, value=xml_text(str(value)))


def testcase(name, result, classname=CLASSNAME, problems=None):
    """A <testcase> element for one boot's runner.Result.  `problems`: the manifest
    checks that did not hold (tools/manifest.problems_of); when given they decide the
    <failure> instead of the exit code."""
    case = ET.Element("testcase", classname=classname, name=xml_text(name),
                      time=f"{result.elapsed:.3f}")
    stop = result.stop
    _properties(case, [("reason", stop.reason), ("exit_code", result.exit_code)] +
                ([("exit_value", stop.exit_value)] if stop.exit_value is not None else []) +
                sorted(result.counters.items()))
    failed = bool(problems) if problems is not None else result.exit_code != 0
    if failed:
        message = "; ".join(problems) if problems else report.summary(result)
        failure = ET.SubElement(case, "failure", type=stop.reason, message=xml_text(message))
        failure.text = xml_text(report.failure_text(result, problems or ()))
    out = ET.SubElement(case, "system-out")
    out.text = xml_text(result.console)
    if result.messages:
        err = ET.SubElement(case, "system-err")
        err.text = xml_text("\n".join(f"warning: {m}" for m in result.messages))
    return case


def error_case(name, message, classname=CLASSNAME, kind="input-error"):
    """A <testcase> for a boot that could not start (bad input) or whose worker died
    (kind "worker-crash"): an <error>."""
    case = ET.Element("testcase", classname=classname, name=xml_text(name), time="0.000")
    error = ET.SubElement(case, "error", type=kind, message=xml_text(message))
    error.text = xml_text(message)
    return case


def skipped_case(name, reason, classname=CLASSNAME):
    """A <testcase> for a manifest entry marked skip = "why"."""
    case = ET.Element("testcase", classname=classname, name=xml_text(name), time="0.000")
    ET.SubElement(case, "skipped", message=xml_text(reason))
    return case


def testsuite(cases, name=SUITE_NAME):
    """<testsuites> holding one <testsuite> of the given <testcase> elements."""
    cases = list(cases)
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root, "testsuite", name=name, tests=str(len(cases)),
        failures=str(sum(1 for c in cases if c.find("failure") is not None)),
        errors=str(sum(1 for c in cases if c.find("error") is not None)),
        skipped=str(sum(1 for c in cases if c.find("skipped") is not None)),
        time=f"{sum(float(c.get('time')) for c in cases):.3f}",
        timestamp=datetime.datetime.now().isoformat(timespec="seconds"),
        hostname=socket.gethostname())
    suite.extend(cases)
    for attr in ("tests", "failures", "errors", "time"):
        root.set(attr, suite.get(attr))
    return root


def write(path, cases, name=SUITE_NAME):
    """Write the JUnit XML of `cases` (<testcase> elements) to `path`."""
    root = testsuite(cases, name)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_results(path, named_results, name=SUITE_NAME):
    """Write [(test name, runner.Result), ...] to `path` as JUnit XML."""
    write(path, [testcase(case_name, result) for case_name, result in named_results], name)
