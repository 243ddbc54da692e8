"""Failure texts for CI (JUnit <failure>, the pytest plugin): the stop reason, what was
expected, the machine's report (registers, disassembly, last interrupts and disk
operations), the final screen and the end of the console.
"""

CONSOLE_TAIL_LINES = 40


def summary(result):
    """One line: reason, detail (an exit's says the value) and whether the expectation
    was met."""
    stop = result.stop
    text = stop.reason
    if stop.detail:
        text += f": {stop.detail}"
    if result.expect is not None:
        text += f" (expectation {result.expect!r} {'met' if result.expect_met else 'NOT met'})"
    return text


def screen_lines(screen):
    """The final screen without its trailing blank rows ([] for a blank screen)."""
    rows = screen.split("\n") if screen else []
    while rows and not rows[-1].strip():
        rows.pop()
    return rows


def console_tail(console, lines=CONSOLE_TAIL_LINES):
    """The last `lines` lines of the console, CR LF shown as LF, and how many were cut."""
    text = console.replace("\r\n", "\n").rstrip("\n")
    if not text:
        return [], 0
    rows = text.split("\n")
    return rows[-lines:], max(0, len(rows) - lines)


def failure_text(result, problems=(), console_lines=CONSOLE_TAIL_LINES):
    """The whole story of a failed boot as text.

    problems: lines saying which check failed (the plugin's unmet markers, say); the
    stop summary comes first, then those, the machine's report, the screen and the
    console's last lines."""
    out = [f"pvboot: {summary(result)} [exit code {result.exit_code}]"]
    out.extend(f"  - {problem}" for problem in problems)
    if result.stop.report:
        out.append("")
        out.append("report:")
        out.extend("  " + line for line in result.stop.report.splitlines())
    rows = screen_lines(result.screen)
    out.append("")
    if rows:
        out.append("screen:")
        out.extend("  |" + row for row in rows)
    else:
        out.append("screen: (blank)")
    tail, cut = console_tail(result.console, console_lines)
    out.append("")
    if tail:
        out.append(f"console (last {len(tail)} lines{f', {cut} before' if cut else ''}):")
        out.extend("  " + row for row in tail)
    else:
        out.append("console: (nothing)")
    for message in result.messages:
        out.append(f"warning: {message}")
    return "\n".join(out)
