"""Fuzz the hostconfig parser (failoverd.hostconfig).

Invariants:
- ``hostconfig.parse`` raises nothing but :class:`HostconfigError` (the file
  is read as UTF-8 with surrogateescape, as ``hostconfig.read`` does);
- accepted input re-serialises: writing each parsed value back single-quoted
  (``KEY='...'``, a quote as ``'"'"'``) and parsing that gives the same values.

Run: fuzz/run.sh fuzz_hostconfig SECONDS
"""

import sys

import atheris

with atheris.instrument_imports():
    from failoverd.hostconfig import HostconfigError, parse


def serialise(values: dict[str, str]) -> str:
    return "".join(f"{key}='" + value.replace("'", "'\"'\"'") + "'\n" for key, value in values.items())


def TestOneInput(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        values = parse(text, "<fuzz>")
    except HostconfigError:
        return
    again = parse(serialise(values), "<re-serialised>")
    assert again == values, f"{values!r} re-parses as {again!r}"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
