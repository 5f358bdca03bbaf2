"""Fuzz the hostconfig parser (failoverd.cli.hostconfig).

Invariants:
- ``hostconfig.parse`` raises nothing but :class:`HostconfigError` (the file
  is read as UTF-8 with surrogateescape, as ``hostconfig.read`` does);
- an accepted value can be a command-line argument: no NUL, only UTF-8
  (ipfailover execs the daemon with the values);
- accepted input re-serialises: writing each parsed value back single-quoted
  (``KEY='...'``, a quote as ``'"'"'``) and parsing that gives the same values
  (unless quoting made a line longer than the parser allows).

Run: fuzz/run.sh fuzz_hostconfig SECONDS
"""

import sys

import atheris

with atheris.instrument_imports():
    from failoverd.cli.hostconfig import MAX_LINE_BYTES, HostconfigError, parse


def serialise(values: dict[str, str]) -> str:
    return "".join(f"{key}='" + value.replace("'", "'\"'\"'") + "'\n" for key, value in values.items())


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        values = parse(text, "<fuzz>")
    except HostconfigError:
        return
    for key, value in values.items():
        assert "\x00" not in value, f"{key}: a NUL byte was accepted: {value!r}"
        value.encode("utf-8")  # raises for bytes that were not UTF-8 (surrogates)
    text = serialise(values)
    if any(len(line.encode()) > MAX_LINE_BYTES for line in text.split("\n")):
        return
    again = parse(text, "<re-serialised>")
    assert again == values, f"{values!r} re-parses as {again!r}"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
