"""``python -m frappe_mpesa sandbox``: serve the Daraja simulator until Ctrl-C."""

import argparse
import sys
import threading

from frappe_mpesa.sandbox.server import (
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	Sandbox,
)


def parse_args(argv):
	"""Command line options."""
	parser = argparse.ArgumentParser(
		prog="python -m frappe_mpesa sandbox",
		description="Serve a local HTTPS simulator of Safaricom's Daraja API (test values only).",
	)
	parser.add_argument("--host", default="127.0.0.1")
	parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
	parser.add_argument("--consumer-key", default=DEFAULT_CONSUMER_KEY)
	parser.add_argument("--consumer-secret", default=DEFAULT_CONSUMER_SECRET)
	parser.add_argument("--passkey", default=DEFAULT_PASSKEY)
	parser.add_argument(
		"--callback-delay", type=float, default=0.2, metavar="SECONDS", help="wait before each STK callback"
	)
	return parser.parse_args(argv)


def main(argv=None):
	"""Serve until interrupted; 0 on Ctrl-C, 1 when the address cannot be used."""
	args = parse_args(argv)
	sandbox = Sandbox(
		host=args.host,
		port=args.port,
		consumer_key=args.consumer_key,
		consumer_secret=args.consumer_secret,
		passkey=args.passkey,
		callback_delay=args.callback_delay,
	)
	try:
		sandbox.start()
	except OSError as error:
		print(f"sandbox: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
		return 1
	# Public test values: printing them is the point.
	facts = {
		"base URL": sandbox.url,
		"CA file to trust": sandbox.ca_file,
		"consumer key": args.consumer_key,
		"consumer secret": args.consumer_secret,
		"shortcode": DEFAULT_SHORTCODE,
		"passkey": args.passkey,
	}
	for name, value in facts.items():
		print(f"{name + ':':18}{value}")
	print("Daraja sandbox running; press Ctrl-C to stop.", flush=True)
	try:
		threading.Event().wait()
	except KeyboardInterrupt:
		pass
	finally:
		sandbox.stop()
	return 0
