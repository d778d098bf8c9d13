"""The sandbox organisation's books: account balances and the payments that moved them.

Transaction status queries, reversals and pull queries look payments up here, so every receipt the
sandbox handed out (STK MpesaReceiptNumber, C2B TransID, B2C/B2B TransactionID) can be asked about.
Not thread-safe: the sandbox holds its lock around every use.
"""

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

WORKING = "Working Account"
FLOAT = "Float Account"
UTILITY = "Utility Account"
CHARGES = "Charges Paid Account"
SETTLEMENT = "Organization Settlement Account"
OPENING_BALANCES = {
	WORKING: Decimal("700000.00"),
	FLOAT: Decimal("0.00"),
	UTILITY: Decimal("228037.00"),
	CHARGES: Decimal("-1540.00"),
	SETTLEMENT: Decimal("0.00"),
}

COMPLETED, REVERSED, REJECTED, CANCELLED = "completed", "reversed", "rejected", "cancelled"


@dataclass
class Payment:
	"""Money that moved, or a C2B payment that validation stopped (state rejected or cancelled)."""

	kind: str  # stk, c2b, b2c, b2b or tax
	receipt: str
	amount: int
	shortcode: str  # the organisation's side: PartyA when paying out, the paybill or till when paid
	debit_party: str  # public names, e.g. "254708374149 - JOHN DOE"
	credit_party: str
	time: datetime  # Nairobi time
	account: str  # the account it moved
	delta: Decimal  # positive when money came in
	conversation_id: str = ""
	originator_conversation_id: str = ""
	msisdn: str = ""
	bill_reference: str = ""
	command: str = ""  # TransactionType or CommandID of the request
	state: str = COMPLETED

	def public(self):
		"""A plain dict of the payment, for inspection."""
		return {**asdict(self), "time": self.time.isoformat(), "delta": str(self.delta)}


class Ledger:
	"""Balances per account and payments per receipt."""

	def __init__(self):
		self.balances = dict(OPENING_BALANCES)
		self.payments = {}

	def record(self, payment):
		"""Keep payment and, unless validation stopped it, move its amount."""
		self.payments[payment.receipt] = payment
		if payment.state == COMPLETED:
			self.balances[payment.account] += payment.delta

	def reverse(self, payment):
		"""Move a completed payment's amount back and mark it reversed."""
		self.balances[payment.account] -= payment.delta
		payment.state = REVERSED

	def find(self, transaction_id="", conversation_id=""):
		"""The payment with that receipt, or whose (originator) conversation id is given; None otherwise."""
		for payment in self.payments.values():
			if payment.state not in (COMPLETED, REVERSED):
				continue
			if transaction_id and payment.receipt == transaction_id:
				return payment
			if conversation_id and conversation_id in (
				payment.conversation_id,
				payment.originator_conversation_id,
			):
				return payment
		return None

	def paid_in(self, shortcode, start, end):
		"""Customer payments to shortcode between start and end inclusive, oldest first."""
		found = [
			payment
			for payment in self.payments.values()
			if payment.kind in ("stk", "c2b")
			and payment.state in (COMPLETED, REVERSED)
			and payment.shortcode == shortcode
			and start <= payment.time <= end
		]
		return sorted(found, key=lambda payment: payment.time)

	def line(self, account):
		"""One account as Daraja writes it: Name|KES|available|current|reserved|uncleared."""
		balance = self.balances[account]
		return f"{account}|KES|{balance:.2f}|{balance:.2f}|0.00|0.00"

	def summary(self):
		"""Every account, as the AccountBalance result parameter."""
		return "&".join(self.line(account) for account in self.balances)

	def amount_record(self, account):
		"""A balance as B2B results write it: {Amount={CurrencyCode=KES, MinimumAmount=cents, BasicAmount=..}}."""
		balance = self.balances[account]
		return (
			f"{{Amount={{CurrencyCode=KES, MinimumAmount={int(balance * 100)}, BasicAmount={balance:.2f}}}}}"
		)
