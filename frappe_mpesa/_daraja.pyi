"""Types of the C core. Import it through frappe_mpesa.daraja."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Protocol

libcurl_version: str
# False when libcurl was initialised by another library first: its freed buffers are then not wiped.
libcurl_wipes_freed_memory: bool
openssl_version: str

class _TokenStore(Protocol):
	# timeout: the seconds the call has left; passed only to methods that accept the keyword.
	def load(self, *, timeout: float | None = None) -> tuple[str, float] | None: ...
	def store(self, token: str, expires_at: float, /, *, timeout: float | None = None) -> None: ...

class DarajaError(Exception): ...

class ValidationError(DarajaError, ValueError):
	field: str | None

class AuthError(DarajaError):
	http_status: int | None
	error_code: str | None
	request_id: str | None
	error_message: str | None

class APIError(DarajaError):
	http_status: int | None
	error_code: str | None
	request_id: str | None
	error_message: str | None

class TransportError(DarajaError):
	sent: bool | None

class TimeoutError(TransportError): ...
class TLSError(TransportError): ...

class Client:
	environment: str
	base_url: str
	timeout: float
	def __init__(
		self,
		consumer_key: str,
		consumer_secret: str,
		*,
		environment: str = "sandbox",
		base_url: str | None = None,
		ca_file: str | None = None,
		timeout: int | float = 30.0,
		connect_timeout: int | float = 5.0,
		token_store: _TokenStore | None = None,
	) -> None: ...
	def access_token(self) -> str: ...
	def stk_push(
		self,
		*,
		shortcode: str | int,
		passkey: str,
		amount: Any,
		phone: str | int,
		callback_url: str,
		account_reference: str,
		description: str,
		transaction_type: str = "CustomerPayBillOnline",
		party_b: str | int | None = None,
		timestamp: str | None = None,
	) -> dict[str, Any]: ...
	def stk_query(
		self, *, shortcode: str | int, passkey: str, checkout_request_id: str, timestamp: str | None = None
	) -> dict[str, Any]: ...
	def c2b_register_urls(
		self, *, shortcode: str | int, confirmation_url: str, validation_url: str, response_type: str = "Completed"
	) -> dict[str, Any]: ...
	def c2b_simulate(
		self,
		*,
		shortcode: str | int,
		amount: Any,
		phone: str | int,
		bill_ref_number: str | None = None,
		command_id: str = "CustomerPayBillOnline",
	) -> dict[str, Any]: ...
	def b2c_payment(
		self,
		*,
		initiator_name: str,
		security_credential: str,
		command_id: str,
		amount: Any,
		party_a: str | int,
		phone: str | int,
		remarks: str,
		result_url: str,
		queue_timeout_url: str,
		occasion: str | None = None,
		originator_conversation_id: str | None = None,
	) -> dict[str, Any]: ...
	def b2b_payment(
		self,
		*,
		initiator_name: str,
		security_credential: str,
		command_id: str,
		amount: Any,
		party_a: str | int,
		party_b: str | int,
		remarks: str,
		result_url: str,
		queue_timeout_url: str,
		account_reference: str | None = None,
		requester: str | int | None = None,
		occasion: str | None = None,
	) -> dict[str, Any]: ...
	def tax_remittance(
		self,
		*,
		initiator_name: str,
		security_credential: str,
		amount: Any,
		party_a: str | int,
		prn: str,
		remarks: str,
		result_url: str,
		queue_timeout_url: str,
	) -> dict[str, Any]: ...
	def reversal(
		self,
		*,
		initiator_name: str,
		security_credential: str,
		transaction_id: str,
		amount: Any,
		receiver_party: str | int,
		remarks: str,
		result_url: str,
		queue_timeout_url: str,
		receiver_identifier_type: str | int = "11",
		occasion: str | None = None,
	) -> dict[str, Any]: ...
	def transaction_status(
		self,
		*,
		initiator_name: str,
		security_credential: str,
		party_a: str | int,
		result_url: str,
		queue_timeout_url: str,
		transaction_id: str | None = None,
		original_conversation_id: str | None = None,
		identifier_type: str | int = "4",
		remarks: str = ...,
		occasion: str | None = None,
	) -> dict[str, Any]: ...
	def account_balance(
		self,
		*,
		initiator_name: str,
		security_credential: str,
		party_a: str | int,
		result_url: str,
		queue_timeout_url: str,
		identifier_type: str | int = "4",
		remarks: str = ...,
	) -> dict[str, Any]: ...
	def dynamic_qr(
		self, *, merchant_name: str, ref_no: str, amount: Any, trx_code: str, cpi: str | int, size: str | int = "300"
	) -> dict[str, Any]: ...
	def pull_register(self, *, shortcode: str | int, nominated_number: str | int, callback_url: str) -> dict[str, Any]:
		"""NominatedNumber goes out as 07XXXXXXXX (Daraja's sample request), whatever form is given."""
	def pull_query(
		self,
		*,
		shortcode: str | int,
		start_date: datetime | str,
		end_date: datetime | str,
		offset: str | int = 0,
	) -> dict[str, Any]:
		"""Aware datetimes, or 'YYYY-MM-DD HH:MM:SS' text in Nairobi time; naive datetimes are refused."""

def security_credential(certificate: str | bytes | bytearray | memoryview, initiator_password: str, /) -> str: ...
def certificate_info(certificate: str | bytes | bytearray | memoryview, /) -> dict[str, Any]: ...
def stk_password(shortcode: str | int, passkey: str, timestamp: str, /) -> str: ...
def timestamp() -> str: ...
def normalize_phone(value: str | int, /) -> str: ...

CallbackKind = Literal["stk", "c2b_validation", "c2b_confirmation", "result", "timeout", "pull"]
C2BRejectReason = Literal["C2B00011", "C2B00012", "C2B00013", "C2B00014", "C2B00015", "C2B00016"]

def parse_callback(body: bytes | bytearray | memoryview | str, kind: CallbackKind) -> dict[str, Any]:
	"""One flat dict of typed fields, plus "kind" and "success".

	For "result" and "timeout": the Result fields as Daraja names them; each ResultParameter and
	ReferenceItem by its Key (the first of a repeated Key); an item whose Key is a Result field
	(a Transaction Status result's OriginatorConversationID and ConversationID, which are the
	queried transaction's) under "ResultParameter.<Key>" / "ReferenceItem.<Key>"; and
	"parameters" / "references": list[tuple[str, Any]], every item in order, repeats kept.
	"""
def verify_callback(
	expected_secret: str,
	given_secret: str | bytes | None,
	remote_addr: str | None,
	allowlist: str | Iterable[str] | None = None,
) -> bool: ...
def new_callback_secret() -> str: ...
def c2b_accept() -> str: ...
def c2b_reject(reason: C2BRejectReason) -> str: ...
def ack() -> str: ...
