"""Daraja's callbacks and query answers applied to the app's records, exactly once.

Every change happens under a row lock (SELECT ... FOR UPDATE) and only along an edge of the
status machines in ``states``: a duplicate, a replay or a late timeout changes nothing. Unique
indexes (CheckoutRequestID, TransID, OriginatorConversationID, receipts, the callback log's
payload hash) make concurrent copies collide in the database instead of creating two records.
A callback whose record does not exist (yet) is kept in the Mpesa Callback Log as Unmatched and
applied when the record appears; it is never applied to anything else.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import flt, get_system_timezone, now_datetime

from frappe_mpesa import backfill, daraja, states
from frappe_mpesa.privacy import loads_shallow, redact, redact_text

SETTINGS = "Mpesa Settings"
EXPRESS = "Mpesa Express Request"
C2B = "Mpesa C2B Payment Register"
B2C = "B2C Payment Disbursement"
# Each payee of a B2C batch: its own OriginatorConversationID, status and receipt.
PAYEE = "B2C Disbursement Payee"
INITIATOR = "Mpesa Initiator Request"
LOG = "Mpesa Callback Log"

APPLIED, DUPLICATE, UNMATCHED, MISMATCH, INVALID = "Applied", "Duplicate", "Unmatched", "Mismatch", "Invalid"
# How a C2B register row was learnt (its ``source``): every path inserts it the same way.
CALLBACK, PULL, STATEMENT = "Callback", "Pull", "Statement import"


@dataclass
class Outcome:
	status: str
	reference_doctype: str | None = None
	reference_name: str | None = None
	note: str | None = None


# match_unmatched() without an id: every kept callback (the scheduled job), never a guest's.
EVERY = object()


def correlation_id(kind, parsed):
	if kind == "stk":
		return parsed.get("CheckoutRequestID")
	if kind in ("c2b_validation", "c2b_confirmation"):
		return parsed.get("TransID")
	if kind == "pull":
		return parsed.get("ResponseRefID")
	return parsed.get("OriginatorConversationID")


def correlation_field(kind):
	if kind == "stk":
		return "CheckoutRequestID"
	if kind in ("c2b_validation", "c2b_confirmation"):
		return "TransID"
	if kind == "pull":
		return "ResponseRefID"
	return "OriginatorConversationID"


def blank_correlation(kind, parsed):
	"""Why a parsed callback can't be matched to anything (its id is empty), or None.

	The parser only asks that the id be there; an empty one would match nothing, be kept as
	Unmatched, and make every later look-up for "no id" scan the kept callbacks."""
	value = correlation_id(kind, parsed)
	if value is None or not str(value).strip():
		return f"{correlation_field(kind)} must not be empty"
	return None


def local_datetime(value):
	"""An aware datetime from the parser as the site's naive local time (how Frappe stores it)."""
	if not isinstance(value, datetime):
		return None
	if value.tzinfo is None:
		return value
	return value.astimezone(ZoneInfo(get_system_timezone())).replace(tzinfo=None)


def same_amount(received, expected):
	"""Amounts compared to the cent; a missing or unreadable amount never matches."""
	try:
		return received is not None and Decimal(str(received)).quantize(Decimal("0.01")) == Decimal(
			str(flt(expected, 2))
		).quantize(Decimal("0.01"))
	except (InvalidOperation, ValueError):
		return False


# Left out of a result's recorded details: the balances get their own rows, and "parameters" /
# "references" repeat the flat fields item by item.
RESULT_LISTS = ("AccountBalance", "parameters", "references")


def finalised_time(parsed):
	"""When a Transaction Status result says the transaction was finalised: Daraja spells it both ways."""
	value = parsed.get("FinalisedTime")
	return value if value is not None else parsed.get("FinalizedTime")


def json_text(value):
	"""JSON for display: redacted, with Decimals and datetimes as text."""
	return json.dumps(redact(value), indent=1, sort_keys=True, default=str)


def lock_row(doctype, fieldname, value, fields):
	"""The row whose ``fieldname`` is ``value``, locked until the transaction ends; or None."""
	if not value:
		return None
	columns = ", ".join(f"`{field}`" for field in fields)
	rows = frappe.db.sql(
		f"select {columns} from `tab{doctype}` where `{fieldname}` = %s for update", (value,), as_dict=True
	)
	return rows[0] if rows else None


def is_conflict(error):
	"""Is ``error`` a unique key refusing a second record? Frappe's database objects have no
	IntegrityError attribute; they answer for their own driver's errors."""
	if isinstance(error, frappe.DuplicateEntryError | frappe.UniqueValidationError):
		return True
	try:
		return bool(frappe.db.is_duplicate_entry(error) or frappe.db.is_unique_key_violation(error))
	except (AttributeError, IndexError, TypeError):
		return False


def apply(settings_name, kind, parsed, source=CALLBACK, settings=None):
	"""Apply one parsed callback; an Outcome says what happened. Never raises for a conflict.

	A C2B payment learnt another way (a pull, a statement import) comes here too, as a
	c2b_confirmation with its ``source``, so whatever reacts to new register rows sees it alike.
	``settings``: the record's row if the caller has read it already (business_shortcode,
	till_number, c2b_reference_doctype), saving the query."""
	refused = blank_correlation(kind, parsed)
	if refused:
		return Outcome(INVALID, note=refused)
	frappe.db.savepoint("frappe_mpesa_apply")
	try:
		if kind == "stk":
			return apply_stk(settings_name, parsed)
		if kind == "c2b_confirmation":
			return apply_c2b_confirmation(settings_name, parsed, source, settings)
		if kind in ("result", "timeout"):
			return apply_result(settings_name, kind, parsed)
		if kind == "pull":
			return apply_pull(settings_name, parsed)
		return Outcome(INVALID, note=f"no record is kept for {kind} callbacks")
	except Exception as error:
		# Another record already holds this receipt or id: a replay aimed elsewhere, or a bug.
		if not is_conflict(error):
			raise
		frappe.db.rollback(save_point="frappe_mpesa_apply")
		return Outcome(MISMATCH, note=f"conflicts with an existing record ({type(error).__name__})")


# ---- STK ------------------------------------------------------------------------------


def apply_stk(settings_name, parsed):
	row = lock_row(
		EXPRESS,
		"checkout_request_id",
		parsed.get("CheckoutRequestID"),
		["name", "status", "amount", "mpesa_settings", "receipt_number"],
	)
	if not row:
		return Outcome(UNMATCHED, note="no Mpesa Express Request has this CheckoutRequestID")
	found = Outcome(APPLIED, EXPRESS, row.name)
	if row.mpesa_settings != settings_name:
		return _mismatch(found, "the request belongs to other Mpesa Settings")
	new = states.stk_outcome(parsed.get("ResultCode"))
	values = {
		"result_code": states.result_code_text(parsed.get("ResultCode")),
		"result_desc": parsed.get("ResultDesc"),
	}
	if new == "Success":
		if not same_amount(parsed.get("Amount"), row.amount):
			return _mismatch(found, f"amount {parsed.get('Amount')} differs from the {row.amount} asked for")
		if not parsed.get("MpesaReceiptNumber"):
			return _mismatch(found, "a successful callback without a receipt number")
		values["receipt_number"] = parsed["MpesaReceiptNumber"]
		values["transaction_date"] = local_datetime(parsed.get("TransactionDate"))
		if row.status == "Success" and not row.receipt_number:
			# An STK query settled it first, and queries carry no receipt: the callback adds it.
			frappe.db.set_value(EXPRESS, row.name, values)
			return found
	return _move(found, states.STK, row.status, new, values)


def apply_stk_query(name, answer):
	"""Apply an STK query's final answer to Express Request ``name`` (same rules as the callback)."""
	row = lock_row(EXPRESS, "name", name, ["name", "status"])
	if not row:
		return Outcome(UNMATCHED)
	# The query carries no receipt or amount: a later callback adds them (see apply_stk).
	new = states.stk_outcome(answer.get("ResultCode"))
	values = {
		"result_code": states.result_code_text(answer.get("ResultCode")),
		"result_desc": answer.get("ResultDesc"),
	}
	return _move(Outcome(APPLIED, EXPRESS, name), states.STK, row.status, new, values)


# ---- C2B ------------------------------------------------------------------------------


def shortcodes(settings):
	return {code for code in (settings.business_shortcode, settings.till_number) if code}


def apply_c2b_confirmation(settings_name, parsed, source=CALLBACK, settings=None):
	if settings is None:
		settings = frappe.db.get_value(
			SETTINGS, settings_name, ["business_shortcode", "till_number", "c2b_reference_doctype"], as_dict=True
		)
	trans_id = parsed.get("TransID")
	if str(parsed.get("BusinessShortCode")) not in shortcodes(settings):
		return Outcome(MISMATCH, note=f"shortcode {parsed.get('BusinessShortCode')} is not this record's")
	if frappe.db.exists(C2B, trans_id):
		return Outcome(DUPLICATE, C2B, trans_id)
	doc = frappe.get_doc(
		{
			"doctype": C2B,
			"trans_id": trans_id,
			"mpesa_settings": settings_name,
			"transaction_type": parsed.get("TransactionType"),
			"trans_time": local_datetime(parsed.get("TransTime")),
			"trans_amount": parsed.get("TransAmount"),
			"business_shortcode": str(parsed.get("BusinessShortCode")),
			"bill_ref_number": parsed.get("BillRefNumber"),
			"invoice_number": parsed.get("InvoiceNumber"),
			"org_account_balance": parsed.get("OrgAccountBalance"),
			"third_party_trans_id": parsed.get("ThirdPartyTransID"),
			"msisdn": parsed.get("MSISDN"),
			"first_name": parsed.get("FirstName"),
			"middle_name": parsed.get("MiddleName"),
			"last_name": parsed.get("LastName"),
			"source": source,
		}
	)
	reference_doctype = settings.c2b_reference_doctype
	if reference_doctype and doc.bill_ref_number and frappe.db.exists(reference_doctype, doc.bill_ref_number):
		doc.reference_doctype, doc.reference_name = reference_doctype, doc.bill_ref_number
	doc.flags.ignore_permissions = True
	doc.flags.ignore_links = True
	try:
		doc.insert()
	except frappe.DuplicateEntryError:
		# A concurrent copy won the primary key.
		frappe.db.rollback(save_point="frappe_mpesa_apply")
		return Outcome(DUPLICATE, C2B, trans_id)
	return Outcome(APPLIED, C2B, doc.name)


def apply_pull(settings_name, parsed):
	"""Transactions posted to the pull API's callback URL, registered as the pull query's are."""
	shortcode = frappe.db.get_value(SETTINGS, settings_name, "business_shortcode")
	outcome = Outcome(DUPLICATE, note="no transaction the register lacks")
	for entry in parsed.get("transactions") or []:
		try:
			payment = backfill.from_pull_entry(entry, shortcode)
		except backfill.EntryError as error:
			_unchecked(outcome, str(error))
			continue
		# Each its own savepoint: a concurrent copy of one entry undoes only that entry.
		frappe.db.savepoint("frappe_mpesa_apply")
		if apply_c2b_confirmation(settings_name, payment, PULL).status == APPLIED:
			outcome.status, outcome.note = APPLIED, None
	return outcome


# ---- results of the initiator APIs (B2C, status, balance, reversal) -----------------------------


def lock_payee(fieldname, value):
	"""The payee row whose ``fieldname`` is ``value``, with its batch's settings and docstatus, locked
	(batch first, then row: every writer of a batch's rows takes them in this order); or None."""
	if not value:
		return None
	parent = frappe.db.get_value(PAYEE, {fieldname: value, "parenttype": B2C}, "parent")
	if not parent:
		return None
	batch = lock_row(B2C, "name", parent, ["name", "mpesa_settings", "docstatus"])
	row = lock_row(
		PAYEE,
		fieldname,
		value,
		["name", "parent", "status", "amount", "conversation_id", "transaction_receipt", "docstatus"],
	)
	if not batch or not row or row.parent != parent:
		return None
	row.mpesa_settings, row.docstatus = batch.mpesa_settings, batch.docstatus
	return row


def apply_result(settings_name, kind, parsed):
	ocid = parsed.get("OriginatorConversationID")
	row = lock_payee("originator_conversation_id", ocid)
	if row:
		return apply_b2c_result(settings_name, kind, parsed, row)
	row = lock_row(
		INITIATOR,
		"originator_conversation_id",
		ocid,
		[
			"name",
			"status",
			"request_type",
			"mpesa_settings",
			"conversation_id",
			"transaction_id",
			"amount",
			"reference_doctype",
			"reference_name",
		],
	)
	if row:
		return apply_initiator_result(settings_name, kind, parsed, row)
	return Outcome(UNMATCHED, note="no request has this OriginatorConversationID")


def _same_conversation(row, parsed):
	return (
		not row.conversation_id
		or not parsed.get("ConversationID")
		or row.conversation_id == parsed["ConversationID"]
	)


def _result_values(row, parsed):
	"""What every initiator result records, whatever its outcome."""
	return {
		"result_code": states.result_code_text(parsed.get("ResultCode")),
		"result_desc": parsed.get("ResultDesc"),
		"conversation_id": row.conversation_id or parsed.get("ConversationID"),
	}


def apply_b2c_result(settings_name, kind, parsed, row):
	"""A B2C result applied to its payee row (``row`` from lock_payee), and the batch's totals."""
	found = Outcome(APPLIED, PAYEE, row.name)
	if row.mpesa_settings != settings_name or row.docstatus != 1:
		return _mismatch(found, "the disbursement belongs to other Mpesa Settings or is not submitted")
	if not _same_conversation(row, parsed):
		return _mismatch(found, "ConversationID differs from Daraja's answer to the request")
	new = states.initiator_outcome(kind, parsed.get("success"))
	values = _result_values(row, parsed)
	if new == "Completed":
		# B2C results say TransactionAmount; B2B and tax results, Amount.
		amount = parsed.get("TransactionAmount")
		amount = parsed.get("Amount") if amount is None else amount
		if amount is None:
			_unchecked(
				found, f"no TransactionAmount in the result: not checked against the {row.amount} disbursed"
			)
		elif not same_amount(amount, row.amount):
			return _mismatch(found, f"amount {amount} differs from the {row.amount} disbursed")
		receipt = parsed.get("TransactionReceipt") or parsed.get("TransactionID")
		if not receipt:
			return _mismatch(found, "a successful result without a receipt")
		values.update(
			transaction_receipt=receipt,
			receiver_name=parsed.get("ReceiverPartyPublicName"),
			completed_on=local_datetime(
				parsed.get("TransactionCompletedDateTime") or parsed.get("TransCompletedTime")
			)
			or now_datetime(),
			charges=b2c_charges(parsed),
		)
	elif new == "Failed":
		# Daraja's own result: the payment did not happen.
		values["failure_confirmed"] = 1
	return _after_payee_move(row.parent, _move(found, states.INITIATOR, row.status, new, values))


def apply_initiator_result(settings_name, kind, parsed, row):
	found = Outcome(APPLIED, INITIATOR, row.name)
	if row.mpesa_settings != settings_name:
		return _mismatch(found, "the request belongs to other Mpesa Settings")
	if not _same_conversation(row, parsed):
		return _mismatch(found, "ConversationID differs from Daraja's answer to the request")
	new = states.initiator_outcome(kind, parsed.get("success"))
	values = _result_values(row, parsed)
	values["result_details"] = json_text({k: v for k, v in parsed.items() if k not in RESULT_LISTS})
	balances = []
	if new == "Completed":
		if row.request_type == "Transaction Status":
			receipt = parsed.get("ReceiptNo")
			if receipt and row.transaction_id and receipt != row.transaction_id:
				return _mismatch(found, f"the result is about {receipt}, not {row.transaction_id}")
			values.update(
				result_receipt=parsed.get("ReceiptNo"),
				transaction_status=parsed.get("TransactionStatus"),
				result_amount=parsed.get("Amount"),
				debit_party=parsed.get("DebitPartyName"),
				credit_party=parsed.get("CreditPartyName"),
				completed_on=local_datetime(finalised_time(parsed)) or now_datetime(),
			)
		elif row.request_type == "Reversal":
			original = parsed.get("OriginalTransactionID")
			if original and row.transaction_id and original != row.transaction_id:
				return _mismatch(found, f"the result reverses {original}, not {row.transaction_id}")
			if not original:
				_unchecked(
					found, f"no OriginalTransactionID in the result: not checked against {row.transaction_id}"
				)
			amount = parsed.get("Amount")
			if amount is None:
				_unchecked(found, f"no Amount in the result: not checked against the {row.amount} to reverse")
			elif row.amount and not same_amount(amount, row.amount):
				return _mismatch(found, f"amount {amount} differs from the {row.amount} to reverse")
			values.update(
				result_receipt=parsed.get("TransactionID"),
				result_amount=parsed.get("Amount"),
				debit_party=parsed.get("DebitPartyPublicName"),
				credit_party=parsed.get("CreditPartyPublicName"),
				completed_on=local_datetime(parsed.get("TransCompletedTime")) or now_datetime(),
			)
		elif row.request_type == "Account Balance":
			balances = parsed.get("AccountBalance") or []
			values["completed_on"] = local_datetime(parsed.get("BOCompletedTime")) or now_datetime()
	outcome = _move(found, states.INITIATOR, row.status, new, values)
	if outcome.status != APPLIED:
		return outcome
	for index, line in enumerate(balances, start=1):
		child = frappe.get_doc(
			{
				"doctype": "Mpesa Account Balance",
				"parent": row.name,
				"parenttype": INITIATOR,
				"parentfield": "balances",
				"idx": index,
				**{
					key: line.get(key)
					for key in ("account", "currency", "current", "available", "reserved", "uncleared")
				},
			}
		)
		child.db_insert()
	if row.request_type == "Transaction Status" and row.reference_doctype in (PAYEE, B2C) and row.reference_name:
		settled = settle_b2c_from_status(row.reference_name, parsed)
		if settled is not None and settled.note:
			# Recorded here, or a disbursement left unsettled (or settled unchecked) says nothing.
			_unchecked(outcome, f"{B2C} {row.reference_name}: {settled.status}, {settled.note}")
	return outcome


def settle_b2c_from_status(name, parsed):
	"""A Transaction Status result about a payee (row ``name``; a disbursement from before batches
	was migrated to one row of that name) settles it, if it says something definite."""
	new = states.transaction_status_outcome(parsed.get("success"), parsed.get("TransactionStatus"))
	if not new:
		return None
	row = lock_payee("name", name)
	if not row or row.docstatus != 1:
		return None
	found = Outcome(APPLIED, PAYEE, name)
	values = {"result_desc": f"Transaction Status: {parsed.get('TransactionStatus')}"}
	if new == "Completed":
		if parsed.get("Amount") is None:
			_unchecked(
				found, f"no Amount in the status result: not checked against the {row.amount} disbursed"
			)
		elif not same_amount(parsed["Amount"], row.amount):
			return _mismatch(
				found,
				f"the status result's amount {parsed['Amount']} differs from the {row.amount} disbursed",
			)
		values.update(
			transaction_receipt=parsed.get("ReceiptNo"),
			receiver_name=parsed.get("CreditPartyName"),
			completed_on=local_datetime(finalised_time(parsed)) or now_datetime(),
			result_code="0",
		)
	else:
		values["failure_confirmed"] = 1
	return _after_payee_move(row.parent, _move(found, states.INITIATOR, row.status, new, values))


# ---- B2C batches --------------------------------------------------------------------------

# Result parameters that report what a B2C payment cost, where Daraja's result carries one.
CHARGE_KEYS = ("TransactionCharges", "B2CTransactionCharges", "Charges", "DebitPartyCharges")


def b2c_charges(parsed):
	"""The charge a payout's result reports, or None: an amount, or the sum of the charges the core
	parsed from DebitPartyCharges' "Fee For B2C Payment|KES|22.40&..." form."""
	for key in CHARGE_KEYS:
		value = parsed.get(key)
		if value in (None, "", []):
			continue
		try:
			if isinstance(value, list):
				return sum((Decimal(str(item.get("amount"))) for item in value), Decimal(0))
			return Decimal(str(value))
		except (InvalidOperation, AttributeError, TypeError):
			return None
	return None


def move_payee(name, new, values):
	"""Record an answer on payee row ``name``: the status only moves forward (a result may already
	have arrived); the other values are written whatever the status. Call with the batch locked."""
	row = lock_row(PAYEE, "name", name, ["status"])
	values = {key: value for key, value in values.items() if value is not None}
	if states.can_move(states.INITIATOR, row.status, new):
		_move(Outcome(APPLIED, PAYEE, name), states.INITIATOR, row.status, new, values)
	elif values:
		frappe.db.set_value(PAYEE, name, values, update_modified=False)


def _after_payee_move(batch_name, outcome):
	if outcome.status == APPLIED:
		refresh_batch(batch_name)
	return outcome


def batch_status(counts):
	"""The batch's status from its rows' {status: count}."""
	total = sum(counts.values())
	done, failed, unknown = counts.get("Completed", 0), counts.get("Failed", 0), counts.get("Unknown", 0)
	if not total:
		return "Queued"
	if counts.get("Queued", 0) == total:
		return "Queued"
	if counts.get("Queued", 0) or counts.get("Sent", 0):
		return "Sending"
	if unknown:
		return "Unknown"
	if done == total:
		return "Completed"
	if failed == total:
		return "Failed"
	return "Partly Completed"


def refresh_batch(name):
	"""Write the batch's counts, totals and status from its rows. Call with the batch locked: the
	rows are read with a locking read, so committed changes of other transactions are counted."""
	rows = frappe.db.sql(
		f"""select status, retried, count(*) as n, coalesce(sum(amount), 0) as amount,
			coalesce(sum(charges), 0) as charges
		from `tab{PAYEE}` where parent = %s and parenttype = %s group by status, retried lock in share mode""",
		(name, B2C),
		as_dict=True,
	)
	counts = {}
	completed_amount = charges = 0
	for r in rows:
		if r.retried:
			continue  # replaced by its retry
		counts[r.status] = counts.get(r.status, 0) + r.n
		if r.status == "Completed":
			completed_amount += flt(r.amount)
			charges += flt(r.charges)
	values = {
		"completed_count": counts.get("Completed", 0),
		"failed_count": counts.get("Failed", 0),
		"unknown_count": counts.get("Unknown", 0),
		"in_flight_count": counts.get("Queued", 0) + counts.get("Sent", 0),
		"completed_amount": completed_amount,
		"total_charges": charges,
		"status": batch_status(counts),
	}
	frappe.db.set_value(B2C, name, values, update_modified=False)
	return values["status"]


def refresh_batch_status(name):
	"""refresh_batch in its own committed transaction; returns the status."""
	lock_row(B2C, "name", name, ["name"])
	status = refresh_batch(name)
	frappe.db.commit()
	return status


# ---- shared ---------------------------------------------------------------------------


def _unchecked(outcome, note):
	"""Add to ``outcome``'s note (kept in the callback log) a cross-check that could not be made."""
	outcome.note = f"{outcome.note}; {note}" if outcome.note else note


def _mismatch(found, note):
	return Outcome(MISMATCH, found.reference_doctype, found.reference_name, note)


def _move(found, machine, current, new, values):
	"""Write ``values`` and the new status if the machine allows current -> new; else nothing.

	Written with db_set, so the record's on_change hooks (doc_events) learn of the move in its
	transaction: what a move pays for reacts there (the ERPNext layer), never called from here.
	A move happens once (the row is locked, final states are final), so the reaction does too."""
	if not states.can_move(machine, current, new):
		return Outcome(
			DUPLICATE, found.reference_doctype, found.reference_name, f"already {current}; {new} ignored"
		)
	values = {key: value for key, value in values.items() if value is not None}
	values["status"] = new
	frappe.get_doc(found.reference_doctype, found.reference_name).db_set(values)
	return found


# ---- the callback log ---------------------------------------------------------------------


def dedupe_key(settings_name, kind, body):
	return hashlib.sha256(f"{settings_name}\0{kind}\0".encode() + body).hexdigest()


def log_callback(settings_name, kind, body, parsed, outcome, remote_addr):
	"""Keep one log entry per distinct payload: redacted for reading, raw only while unmatched."""
	key = dedupe_key(settings_name, kind, body)
	try:
		shown = json_text(loads_shallow(body))
	except ValueError:
		# Refused, or not JSON: kept as redacted text, never given to a recursive parser.
		shown = redact_text(body.decode("utf-8", "replace"))
	doc = frappe.get_doc(
		{
			"doctype": LOG,
			"kind": kind,
			"status": outcome.status,
			"correlation_id": (correlation_id(kind, parsed) if parsed else None) or None,
			"mpesa_settings": settings_name,
			"reference_doctype": outcome.reference_doctype,
			"reference_name": outcome.reference_name,
			"remote_addr": remote_addr,
			"note": outcome.note,
			"dedupe_key": key,
			"payload": shown,
			"raw_payload": body.decode("utf-8", "replace") if outcome.status == UNMATCHED else None,
		}
	)
	doc.flags.ignore_permissions = True
	doc.flags.ignore_links = True
	frappe.db.savepoint("frappe_mpesa_log")
	try:
		doc.insert()
		return doc.name
	except (frappe.DuplicateEntryError, frappe.UniqueValidationError):
		frappe.db.rollback(save_point="frappe_mpesa_log")
	# A copy of a payload seen before: only an unmatched entry that now applied changes.
	existing = frappe.db.get_value(LOG, {"dedupe_key": key}, ["name", "status"], as_dict=True)
	if existing and existing.status == UNMATCHED and outcome.status != UNMATCHED:
		_settle_log(existing.name, outcome)
	return existing.name if existing else None


def _settle_log(name, outcome):
	frappe.db.set_value(
		LOG,
		name,
		{
			"status": outcome.status,
			"reference_doctype": outcome.reference_doctype,
			"reference_name": outcome.reference_name,
			"note": outcome.note,
			"raw_payload": None,
		},
	)


def match_unmatched(correlation=EVERY, limit=200):
	"""Apply kept callbacks whose record now exists; returns how many were settled. Commits nothing.

	With a ``correlation`` id, only the callbacks kept for it; an empty or None id matches nothing
	(a guest's callback must never make its request walk the whole backlog)."""
	filters = {"status": UNMATCHED}
	if correlation is not EVERY:
		if correlation is None or not str(correlation).strip():
			return 0
		filters["correlation_id"] = correlation
	settled = 0
	for name in frappe.get_all(LOG, filters=filters, pluck="name", order_by="creation asc", limit=limit):
		row = lock_row(LOG, "name", name, ["name", "status", "kind", "mpesa_settings", "raw_payload"])
		if not row or row.status != UNMATCHED or not row.raw_payload:
			continue
		try:
			parsed = daraja.parse_callback(row.raw_payload.encode(), row.kind)
		except daraja.ValidationError as error:
			_settle_log(name, Outcome(INVALID, note=str(error)))
			continue
		outcome = apply(row.mpesa_settings, row.kind, parsed)
		if outcome.status != UNMATCHED:
			_settle_log(name, outcome)
			settled += 1
	return settled
