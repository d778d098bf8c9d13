"""``python -m frappe_mpesa sandbox``: serve the Daraja simulator until Ctrl-C."""

import argparse
import sys
import threading

from frappe_mpesa.sandbox.server import (
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_INITIATOR_NAME,
	DEFAULT_INITIATOR_PASSWORD,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	MSISDN_STYLES,
	QUIRKS,
	Sandbox,
)
from frappe_mpesa.sandbox.service import MPESA_TEST_CERT_PEM


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
		"--callback-delay", type=float, default=0.2, metavar="SECONDS", help="wait before each callback"
	)
	parser.add_argument("--initiator-name", default=DEFAULT_INITIATOR_NAME)
	parser.add_argument("--initiator-password", default=DEFAULT_INITIATOR_PASSWORD)
	parser.add_argument("--msisdn-style", choices=list(MSISDN_STYLES), default="hashed", help="C2B MSISDN")
	parser.add_argument("--c2b-validation", action="store_true", help="ask the ValidationURL first")
	parser.add_argument(
		"--c2b-v1-only",
		action="store_true",
		help="answer C2B v2 registration 401.003.01, as without the product",
	)
	parser.add_argument("--quirk", action="append", choices=QUIRKS, default=[], help="may be repeated")
	return parser.parse_args(argv)


def make_sandbox(args):
	"""The sandbox the options describe; ValueError when they contradict each other."""
	return Sandbox(
		host=args.host,
		port=args.port,
		consumer_key=args.consumer_key,
		consumer_secret=args.consumer_secret,
		passkey=args.passkey,
		callback_delay=args.callback_delay,
		initiator_name=args.initiator_name,
		initiator_password=args.initiator_password,
		c2b_v2_product=not args.c2b_v1_only,
		c2b_validation=args.c2b_validation,
		msisdn_style=args.msisdn_style,
		quirks=args.quirk,
	)


def main(argv=None):
	"""Serve until interrupted; 0 on Ctrl-C, 1 when the address cannot be used, 2 for contradictory options."""
	args = parse_args(argv)
	try:
		sandbox = make_sandbox(args)
	except ValueError as error:
		print(f"sandbox: {error}", file=sys.stderr)
		return 2
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
		"initiator name": args.initiator_name,
		"initiator password": args.initiator_password,
		"credential certificate": MPESA_TEST_CERT_PEM,
	}
	for name, value in facts.items():
		print(f"{name + ':':24}{value}")
	print("Daraja sandbox running; press Ctrl-C to stop.", flush=True)
	try:
		threading.Event().wait()
	except KeyboardInterrupt:
		pass
	finally:
		sandbox.stop()
	return 0
