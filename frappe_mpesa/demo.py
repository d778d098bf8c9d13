"""``python -m frappe_mpesa demo``: the product end to end against the embedded sandbox.

Starts the Daraja sandbox and a local HTTPS callback receiver, then, through the C
extension: OAuth token -> STK push -> callback received, verified and parsed -> STK
query; a push the customer cancels; a C2B payment (register URLs, simulate, confirmation
received); and a B2C payout whose Security Credential is made at runtime from the
sandbox's public certificate. No internet and no credentials are needed.
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
	MPESA_TEST_CERT_PEM,
	CallbackReceiver,
	Sandbox,
)

CUSTOMER = "0708 374 149"
CANCELLING_CUSTOMER = "254700001032"  # the sandbox's "customer cancels the prompt" number
C2B_SHORTCODE = "600984"
B2C_SHORTCODE = "600996"
INITIATOR = ("testapi", "Safaricom999!*!")  # the sandbox's test initiator


def step(number, title):
	print(f"\n[{number}] {title}")


def show(**fields):
	for name, value in fields.items():
		print(f"    {name:<30} {value}")


class Callbacks:
	"""The callbacks the receiver got, checked as the Frappe app checks them: the secret in
	the URL path and the sender's address, then parsed by the C core."""

	def __init__(self, receiver, timeout):
		self.receiver = receiver
		self.timeout = timeout
		self.secret = daraja.new_callback_secret()

	def url(self, kind):
		return f"{self.receiver.url}/hooks/{kind}/{self.secret}"

	def wait(self, kind, key, value):
		"""The first parsed callback of this kind whose field key equals value."""
		deadline = time.monotonic() + self.timeout
		while time.monotonic() < deadline:
			for request in self.receiver.received:
				_, hooks, sent_kind, secret = (request.path.split("/") + ["", "", ""])[:4]
				if sent_kind != kind:
					continue
				if not daraja.verify_callback(self.secret, secret, "127.0.0.1", allowlist="127.0.0.0/8"):
					continue
				parsed = daraja.parse_callback(request.body, kind)
				if parsed.get(key) == value:
					return parsed
			time.sleep(0.05)
		raise TimeoutError(f"no {kind} callback with {key}={value} within {self.timeout} s")


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


def push(client, callbacks, phone, reference):
	return client.stk_push(
		shortcode=DEFAULT_SHORTCODE,
		passkey=DEFAULT_PASSKEY,
		amount=150,
		phone=phone,
		callback_url=callbacks.url("stk"),
		account_reference=reference,
		description="Demo order",
	)


def express(client, callbacks):
	"""Steps 1 to 6: Lipa na M-Pesa Express. True when every outcome was the expected one."""
	step(1, "OAuth token")
	token = client.access_token()
	show(token=f"{token[:4]}... ({len(token)} characters)", reused_on_next_call=client.access_token() == token)

	step(2, f"STK push: KES 150 from {CUSTOMER} to shortcode {DEFAULT_SHORTCODE}")
	show(phone_normalised=daraja.normalize_phone(CUSTOMER))
	answer = push(client, callbacks, CUSTOMER, "INV-2026-001")
	show(**{k: answer[k] for k in ("ResponseCode", "CheckoutRequestID", "CustomerMessage")})

	step(3, "Callback received: secret and sender verified, body parsed in C")
	paid = callbacks.wait("stk", "CheckoutRequestID", answer["CheckoutRequestID"])
	show(**{k: paid.get(k) for k in ("success", "ResultCode", "Amount", "MpesaReceiptNumber", "TransactionDate")})

	step(4, "STK query")
	result = query_until_final(client, answer["CheckoutRequestID"], callbacks.timeout)
	show(ResultCode=result["ResultCode"], ResultDesc=result["ResultDesc"])

	step(5, "A customer who cancels the prompt")
	cancelled = push(client, callbacks, CANCELLING_CUSTOMER, "INV-2026-002")
	refused = callbacks.wait("stk", "CheckoutRequestID", cancelled["CheckoutRequestID"])
	show(success=refused["success"], ResultCode=refused["ResultCode"], ResultDesc=refused["ResultDesc"])

	step(6, "Bad input is refused before anything is sent")
	try:
		push(client, callbacks, "0812 000 000", "INV-2026-003")
	except daraja.ValidationError as e:
		show(refused=str(e))
	return paid["success"] and result["ResultCode"] == "0" and refused["ResultCode"] == 1032


def c2b(client, callbacks):
	"""Step 7: a paybill payment made by a customer, confirmed to the business."""
	step(7, f"C2B: register URLs for {C2B_SHORTCODE}, a customer pays, the confirmation arrives")
	registered = client.c2b_register_urls(
		shortcode=C2B_SHORTCODE,
		confirmation_url=callbacks.url("c2b_confirmation"),
		validation_url=callbacks.url("c2b_validation"),
	)
	show(registered=registered["ResponseDescription"], api_version=registered["api_version"])
	client.c2b_simulate(shortcode=C2B_SHORTCODE, amount=320, phone=CUSTOMER, bill_ref_number="ACC-77")
	confirmation = callbacks.wait("c2b_confirmation", "BillRefNumber", "ACC-77")
	show(**{k: confirmation.get(k) for k in ("TransID", "TransAmount", "TransTime", "MSISDN")})
	return confirmation["TransAmount"] == 320


def b2c(client, callbacks):
	"""Step 8: a payout to a phone, its Security Credential made at runtime."""
	step(8, f"B2C: KES 500 from {B2C_SHORTCODE} to {CUSTOMER}")
	with open(MPESA_TEST_CERT_PEM, "rb") as f:
		certificate = f.read()
	show(certificate=daraja.certificate_info(certificate)["subject"])
	credential = daraja.security_credential(certificate, INITIATOR[1])
	show(security_credential=f"{credential[:12]}... ({len(credential)} characters, never stored)")
	answer = client.b2c_payment(
		initiator_name=INITIATOR[0],
		security_credential=credential,
		command_id="BusinessPayment",
		amount=500,
		party_a=B2C_SHORTCODE,
		phone=CUSTOMER,
		remarks="Demo payout",
		result_url=callbacks.url("result"),
		queue_timeout_url=callbacks.url("timeout"),
	)
	show(OriginatorConversationID=answer["OriginatorConversationID"], ConversationID=answer["ConversationID"])
	result = callbacks.wait("result", "OriginatorConversationID", answer["OriginatorConversationID"])
	show(**{k: result.get(k) for k in ("success", "TransactionReceipt", "TransactionAmount",
		"ReceiverPartyPublicName", "TransactionCompletedDateTime")})
	return result["success"]


def run(timeout):
	with Sandbox(callback_delay=0.3) as sandbox, CallbackReceiver() as receiver:
		print("frappe_mpesa demo")
		show(extension=f"libcurl {daraja.libcurl_version}, {daraja.openssl_version}", sandbox=sandbox.url,
			callbacks_to=receiver.url)
		client = daraja.Client(DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, base_url=sandbox.url, ca_file=CA_FILE)
		callbacks = Callbacks(receiver, timeout)
		outcomes = [express(client, callbacks), c2b(client, callbacks), b2c(client, callbacks)]

		token_requests = sandbox.count("/oauth/v1/generate")
		print(f"\ntoken requests made: {token_requests} (one, reused for every call)")
		ok = all(outcomes) and token_requests == 1
		print("demo: OK" if ok else "demo: FAILED")
		return 0 if ok else 1


def main(argv=None):
	parser = argparse.ArgumentParser(prog="python -m frappe_mpesa demo", description=__doc__.splitlines()[0])
	parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each callback")
	args = parser.parse_args(argv)
	try:
		return run(args.timeout)
	except (daraja.DarajaError, TimeoutError) as e:
		print(f"demo: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
		return 1


if __name__ == "__main__":
	sys.exit(main())
