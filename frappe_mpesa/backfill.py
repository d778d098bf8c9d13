"""Backfill: C2B payments learnt without their confirmation, as the register records them.

Plain Python (no Frappe import). A pull query's entries and a portal statement's rows become
the same dict a C2B confirmation parses to (Daraja's field names), so the register takes them
along the confirmation's own path. Also here: which window a scheduled pull asks for, and
whether a settings record's pull is due.
"""

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from frappe_mpesa.statement import NAIROBI

# Daraja's pull query covers the last 48 hours; a run re-asks a little of the last window, as a
# payment can reach the pull listing some minutes after its time.
MAX_BACK = timedelta(hours=48)
OVERLAP = timedelta(minutes=10)
OFF, HOURLY, EVERY = "Off", "Hourly", "Every N minutes"
MIN_INTERVAL = 5
TRANSACTION_TYPES = {"c2b-pay-bill-debit": "Pay Bill", "c2b-buy-goods-debit": "Buy Goods"}
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


class EntryError(ValueError):
	"""A pull entry that cannot be recorded: ``field`` names the fault."""

	def __init__(self, field, message):
		super().__init__(f"{field}: {message}")
		self.field = field


def split_name(text):
	"""(first, middle, last) from a payer's name as the statement or a pull shows it."""
	words = (text or "").split()
	if not words:
		return "", "", ""
	if len(words) == 1:
		return words[0], "", ""
	return words[0], " ".join(words[1:-1]), words[-1]


def _payer(values, name):
	first, middle, last = split_name(name)
	values.update(FirstName=first, MiddleName=middle, LastName=last)
	return values


def from_statement_row(row, shortcode):
	"""A statement row (statement.StatementRow) registered for ``shortcode``: receipt as TransID,
	Completion Time, Paid In, A/C No. as BillRefNumber, the payer from Other Party Info (whose
	phone is masked, and kept as masked)."""
	return _payer(
		{
			"TransID": row.receipt,
			"TransactionType": row.reason_type or row.details or "",
			"TransTime": row.completed_at,
			"TransAmount": row.paid_in,
			"BusinessShortCode": str(shortcode),
			"BillRefNumber": row.account_no,
			"InvoiceNumber": "",
			"OrgAccountBalance": row.balance,
			"ThirdPartyTransID": "",
			"MSISDN": row.payer_phone,
		},
		row.payer_name,
	)


def pull_entries(answer):
	"""The transactions of a pull query's answer: Response holds them one or two lists deep."""
	response = (answer or {}).get("Response")
	if not response:
		return []
	if not isinstance(response, list):
		raise EntryError("Response", "is not a list")
	entries = []
	for item in response:
		entries.extend(item if isinstance(item, list) else [item])
	return entries


def pull_time(value):
	"""A pull entry's trxDate ("2026-11-28T10:12:44.000+03:00", offset optional: then Nairobi)."""
	if isinstance(value, datetime):
		return value if value.tzinfo else value.replace(tzinfo=NAIROBI)
	match = _ISO.match(str(value or "").strip())
	if not match:
		raise EntryError("trxDate", f"{value!r} is not a date and time")
	day, clock, fraction, offset = match.groups()
	when = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
	if fraction:
		when = when.replace(microsecond=int(fraction[:6].ljust(6, "0")))
	if not offset:
		return when.replace(tzinfo=NAIROBI)
	if offset == "Z":
		offset = "+00:00"
	sign = -1 if offset[0] == "-" else 1
	digits = offset[1:].replace(":", "")
	delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
	return when.replace(tzinfo=timezone(sign * delta))


def pull_amount(value):
	try:
		amount = Decimal(str(value).replace(",", "").strip())
	except (InvalidOperation, ValueError):
		raise EntryError("amount", f"{value!r} is not an amount") from None
	if not amount.is_finite() or amount <= 0 or amount.adjusted() > 12:
		raise EntryError("amount", f"{value!r} is not an amount")
	return amount.quantize(Decimal("0.01"))


def from_pull_entry(entry, shortcode):
	"""A pull query entry registered for the ``shortcode`` queried; EntryError names the fault."""
	if not isinstance(entry, dict):
		raise EntryError("Response", "an entry is not an object")
	trans_id = str(entry.get("transactionId") or "").strip()
	if not trans_id:
		raise EntryError("transactionId", "is empty")
	kind = str(entry.get("transactiontype") or "")
	return _payer(
		{
			"TransID": trans_id,
			"TransactionType": TRANSACTION_TYPES.get(kind, kind),
			"TransTime": pull_time(entry.get("trxDate")),
			"TransAmount": pull_amount(entry.get("amount")),
			"BusinessShortCode": str(shortcode),
			"BillRefNumber": str(entry.get("billreference") or ""),
			"InvoiceNumber": "",
			"OrgAccountBalance": None,
			"ThirdPartyTransID": "",
			"MSISDN": str(entry.get("msisdn") or ""),
		},
		str(entry.get("sender") or ""),
	)


def pull_window(now, last_end=None, overlap=OVERLAP, max_back=MAX_BACK):
	"""(start, end) for a pull run at ``now``: from the last completed window's end less the
	overlap, never more than ``max_back`` ago (and all of it on a first run)."""
	earliest = now - max_back
	start = earliest if last_end is None else max(earliest, min(last_end - overlap, now))
	return start, now


def interval_minutes(schedule, interval=None):
	"""Minutes between pulls for a schedule, or None when it is off."""
	if schedule == HOURLY:
		return 60
	if schedule == EVERY:
		try:
			minutes = int(interval or 0)
		except (TypeError, ValueError):
			minutes = 0
		return max(MIN_INTERVAL, minutes)
	return None


def pull_due(schedule, interval, last_started, now):
	"""Whether a pull should start at ``now``. A minute's slack keeps a once-a-minute cron from
	running an hourly pull at 61 minutes because the last one started a few seconds late."""
	minutes = interval_minutes(schedule, interval)
	if minutes is None:
		return False
	if last_started is None:
		return True
	return now - last_started >= timedelta(minutes=minutes) - timedelta(seconds=30)
