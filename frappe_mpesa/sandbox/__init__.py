"""Embedded Daraja sandbox: a local HTTPS simulator of Safaricom's API and a callback receiver.

Standard library only (plus the ``openssl`` command for SecurityCredential checks), for tests,
benchmarks and the demo. The certificates under ``certs/`` are public test keys.
"""

from frappe_mpesa.sandbox.receiver import CallbackReceiver
from frappe_mpesa.sandbox.server import (
	B2B_OUTCOMES,
	B2C_OUTCOMES,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_INITIATOR_NAME,
	DEFAULT_INITIATOR_PASSWORD,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	FAULT_MODES,
	MSISDN_STYLES,
	QUEUE_TIMEOUT,
	QUIRKS,
	STK_OUTCOMES,
	STK_SUCCESS,
	Sandbox,
)
from frappe_mpesa.sandbox.service import (
	CA_FILE,
	MPESA_TEST_CERT_DER,
	MPESA_TEST_CERT_PEM,
	MPESA_TEST_KEY,
	SERVER_CERT,
	SERVER_KEY,
	UNTRUSTED_CA_FILE,
	RecordedRequest,
)

__all__ = [
	"B2B_OUTCOMES",
	"B2C_OUTCOMES",
	"CA_FILE",
	"DEFAULT_CONSUMER_KEY",
	"DEFAULT_CONSUMER_SECRET",
	"DEFAULT_INITIATOR_NAME",
	"DEFAULT_INITIATOR_PASSWORD",
	"DEFAULT_PASSKEY",
	"DEFAULT_SHORTCODE",
	"FAULT_MODES",
	"MPESA_TEST_CERT_DER",
	"MPESA_TEST_CERT_PEM",
	"MPESA_TEST_KEY",
	"MSISDN_STYLES",
	"QUEUE_TIMEOUT",
	"QUIRKS",
	"SERVER_CERT",
	"SERVER_KEY",
	"STK_OUTCOMES",
	"STK_SUCCESS",
	"UNTRUSTED_CA_FILE",
	"CallbackReceiver",
	"RecordedRequest",
	"Sandbox",
]
