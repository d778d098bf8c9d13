"""Fuzz harness (atheris): parse_callback for every kind; verify_callback on fuzzed addresses and allowlists.

	python fuzz/fuzz_callbacks.py [libFuzzer options] CORPUS_DIR...   # make fuzz runs it
	python fuzz/fuzz_callbacks.py REPRODUCER                          # replay one input

A ValidationError is the expected answer to a bad input. Any other exception, a crash, a sanitizer
report, a hang or a wrong answer is a finding:

- parse_callback returns a dict whose "kind" is the kind asked for and whose "success" is a bool;
- verify_callback returns a bool, False whenever the given secret is not the expected one, and True
  for the right secret when there is no allowlist.
"""

import sys

import atheris
from inputs import SECRET, callback_call

from frappe_mpesa import daraja


def check_parsed(result, kind):
	assert type(result) is dict, f"parse_callback returned {type(result).__name__}"
	assert result.get("kind") == kind, f"parsed as {kind!r}, got kind {result.get('kind')!r}"
	assert type(result.get("success")) is bool, f"success is {result.get('success')!r}"


def check_verified(result, given, allowlist):
	assert type(result) is bool, f"verify_callback returned {type(result).__name__}"
	if isinstance(given, bytes):
		given = given.decode("utf-8", "surrogateescape")
	if given != SECRET:
		assert result is False, "a wrong secret was accepted"
	elif allowlist is None:
		assert result is True, "the right secret without an allowlist was refused"


def test_one_input(data):
	call = callback_call(data)
	if call is None:
		return
	name, args = call
	try:
		result = getattr(daraja, name)(*args)
	except daraja.ValidationError:
		return
	if name == "parse_callback":
		check_parsed(result, args[1])
	else:
		check_verified(result, args[1], args[3])


def main():
	atheris.Setup(sys.argv, test_one_input)
	atheris.Fuzz()


if __name__ == "__main__":
	main()
