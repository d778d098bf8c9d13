"""Types of the C core. Import it through frappe_mpesa.daraja."""

from collections.abc import Iterable
from typing import Any, Literal, Protocol

libcurl_version: str
openssl_version: str

class _TokenStore(Protocol):
	def load(self) -> tuple[str, float] | None: ...
	def store(self, token: str, expires_at: float, /) -> None: ...

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
		timeout: float = 30.0,
		connect_timeout: float = 5.0,
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

def security_credential(certificate: str | bytes | bytearray | memoryview, initiator_password: str, /) -> str: ...
def certificate_info(certificate: str | bytes | bytearray | memoryview, /) -> dict[str, Any]: ...
def stk_password(shortcode: str | int, passkey: str, timestamp: str, /) -> str: ...
def timestamp() -> str: ...
def normalize_phone(value: str | int, /) -> str: ...

CallbackKind = Literal["stk", "c2b_validation", "c2b_confirmation", "result", "timeout", "pull"]
C2BRejectReason = Literal["C2B00011", "C2B00012", "C2B00013", "C2B00014", "C2B00015", "C2B00016"]

def parse_callback(body: bytes | bytearray | memoryview | str, kind: CallbackKind) -> dict[str, Any]: ...
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
