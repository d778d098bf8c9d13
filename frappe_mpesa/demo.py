"""``python -m frappe_mpesa demo``: the product end to end against the embedded sandbox.

Starts the Daraja sandbox and a local HTTPS callback receiver, then, through the C
extension: OAuth token -> STK push -> callback received -> STK query, and a push the
customer cancels. No internet and no credentials are needed.
"""

import argparse
import sys
import time

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import (
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	CallbackReceiver,
	Sandbox,
)

CUSTOMER = "0708 374 149"
CANCELLING_CUSTOMER = "254700001032"  # the sandbox's "customer cancels the prompt" number


def step(number, title):
	print(f"\n[{number}] {title}")


def show(**fields):
	for name, value in fields.items():
		print(f"    {name:<22} {value}")


def callback_for(receiver, checkout_id, timeout):
	"""The stkCallback body the sandbox posted for one CheckoutRequestID."""
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		for request in receiver.received:
			body = (request.json or {}).get("Body", {}).get("stkCallback", {})
			if body.get("CheckoutRequestID") == checkout_id:
				return body
		time.sleep(0.05)
	raise TimeoutError(f"no callback for {checkout_id} within {timeout} s")


def query_until_final(client, checkout_id, timeout):
	"""STK query, waiting while Daraja says the transaction is still being processed."""
	deadline = time.monotonic() + timeout
	while True:
		try:
			return client.stk_query(
				shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id=checkout_id
			)
		except daraja.APIError as e:
			if e.error_code != "500.001.1001" or time.monotonic() > deadline:
				raise
			time.sleep(0.1)


def push(client, receiver, phone, reference):
	return client.stk_push(
		shortcode=DEFAULT_SHORTCODE,
		passkey=DEFAULT_PASSKEY,
		amount=150,
		phone=phone,
		callback_url=receiver.url + "/hooks/stk",
		account_reference=reference,
		description="Demo order",
	)


def run(timeout):
	with Sandbox(callback_delay=0.3) as sandbox, CallbackReceiver() as receiver:
		print("frappe_mpesa demo")
		show(
			extension=f"libcurl {daraja.libcurl_version}, {daraja.openssl_version}",
			sandbox=sandbox.url,
			callbacks_to=receiver.url + "/hooks/stk",
		)
		client = daraja.Client(
			DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, base_url=sandbox.url, ca_file=CA_FILE
		)

		step(1, "OAuth token")
		token = client.access_token()
		again = client.access_token()
		show(token=f"{token[:4]}... ({len(token)} characters)", reused_on_next_call=again == token)

		step(2, f"STK push: KES 150 from {CUSTOMER} to shortcode {DEFAULT_SHORTCODE}")
		show(phone_normalised=daraja.normalize_phone(CUSTOMER))
		answer = push(client, receiver, CUSTOMER, "INV-2026-001")
		show(**{k: answer[k] for k in ("ResponseCode", "CheckoutRequestID", "CustomerMessage")})

		step(3, "Callback received")
		callback = callback_for(receiver, answer["CheckoutRequestID"], timeout)
		items = {i["Name"]: i.get("Value") for i in callback.get("CallbackMetadata", {}).get("Item", [])}
		show(ResultCode=callback["ResultCode"], ResultDesc=callback["ResultDesc"], **items)

		step(4, "STK query")
		result = query_until_final(client, answer["CheckoutRequestID"], timeout)
		show(ResultCode=result["ResultCode"], ResultDesc=result["ResultDesc"])

		step(5, "A customer who cancels the prompt")
		cancelled = push(client, receiver, CANCELLING_CUSTOMER, "INV-2026-002")
		callback = callback_for(receiver, cancelled["CheckoutRequestID"], timeout)
		show(ResultCode=callback["ResultCode"], ResultDesc=callback["ResultDesc"])

		step(6, "Bad input is refused before anything is sent")
		try:
			push(client, receiver, "0812 000 000", "INV-2026-003")
		except daraja.ValidationError as e:
			show(refused=str(e))

		token_requests = sandbox.count("/oauth/v1/generate")
		print(f"\ntoken requests made: {token_requests} (one, reused for every call)")
		ok = result["ResultCode"] == "0" and callback["ResultCode"] == 1032 and token_requests == 1
		print("demo: OK" if ok else "demo: FAILED")
		return 0 if ok else 1


def main(argv=None):
	parser = argparse.ArgumentParser(prog="python -m frappe_mpesa demo", description=__doc__.splitlines()[0])
	parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each callback")
	args = parser.parse_args(argv)
	try:
		return run(args.timeout)
	except daraja.DarajaError as e:
		print(f"demo: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
		return 1


if __name__ == "__main__":
	sys.exit(main())
