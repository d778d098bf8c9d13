"""Command line: ``python -m frappe_mpesa sandbox|demo|credential|certificate``."""

import sys

USAGE = """usage: python -m frappe_mpesa COMMAND [options]

commands:
  sandbox   serve the embedded Daraja simulator over local HTTPS
  demo      run token -> STK push -> callback -> STK query against the sandbox
  credential FILE [--password-stdin]
            print the Security Credential for an initiator password (asked without echo)
  certificate FILE
            show a certificate's subject, key, fingerprint and validity
"""


def main(argv=None):
	argv = list(sys.argv[1:] if argv is None else argv)
	if not argv or argv[0] in ("-h", "--help"):
		print(USAGE, end="")
		return 0 if argv else 2
	command, rest = argv[0], argv[1:]
	if command == "sandbox":
		from frappe_mpesa.sandbox.cli import main as run
	elif command == "demo":
		from frappe_mpesa.demo import main as run
	elif command == "credential":
		from frappe_mpesa.certificate_cli import credential_main as run
	elif command == "certificate":
		from frappe_mpesa.certificate_cli import certificate_main as run
	else:
		print(f"unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
		return 2
	return run(rest)


if __name__ == "__main__":
	sys.exit(main())
