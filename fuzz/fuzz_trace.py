"""Fuzz the native trace reader (failoverd.analysis.trace).

Invariants:
- ``parse_trace`` raises nothing but :class:`TraceError`, with a line number
  within the input; with ``skip_bad`` it raises only for a bad header;
- accepted input re-serialises identically: every event line formats back to
  exactly its text, and the header's JSON, written canonically and read
  again, gives the same header;
- event times never go backwards.

Run: fuzz/run.sh fuzz_trace SECONDS
"""

import sys

import atheris

with atheris.instrument_imports():
    from failoverd.analysis.trace import TraceError, TraceHeader, format_event, parse_trace


def TestOneInput(data: bytes) -> None:
    lines = data.splitlines(keepends=True)
    try:
        trace = parse_trace(lines, name="<fuzz>")
    except TraceError as exc:
        assert 0 <= exc.line <= max(1, len(lines)), f"line {exc.line} of {len(lines)}"
        try:
            parse_trace(lines, name="<fuzz>", skip_bad=True)
        except TraceError as again:
            assert again.line <= 2, f"skip_bad still failed at line {again.line}: {again}"
        return
    assert TraceHeader.from_json(trace.header.to_json()) == trace.header, "header does not round-trip"
    event_lines = [raw for raw in lines[2:] if not raw.startswith(b"#")]
    assert len(event_lines) == len(trace.events)
    previous = trace.header.start
    for raw, event in zip(event_lines, trace.events):
        assert (format_event(event) + "\n").encode("ascii") == raw, f"{raw!r} re-serialises differently"
        assert event.time >= previous
        previous = event.time


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
