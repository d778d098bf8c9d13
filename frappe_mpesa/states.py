"""Status machines of the app's records: forward-only, terminal states never change.

Plain Python (no Frappe import), so the rules are tested by pytest without a site. A callback
or a status query only moves a record along an edge listed here; anything else (a duplicate,
a late timeout after a result, a replay) leaves it as it is.
"""

# Mpesa Express Request: Queued (saved, push not yet answered) -> Pending (Daraja accepted it,
# CheckoutRequestID known) -> a final state. Unknown: the push may have reached Daraja but no
# answer came, so there is no CheckoutRequestID to query; it stays for a person to resolve.
STK = {
	"Queued": {"Pending", "Failed", "Unknown"},
	"Pending": {"Success", "Failed", "Cancelled", "Timeout"},
	"Unknown": {"Success", "Failed", "Cancelled", "Timeout"},
}
STK_FINAL = frozenset({"Success", "Failed", "Cancelled", "Timeout"})

# B2C Payment Disbursement (and any initiator request): the OriginatorConversationID is known
# from Queued on, so a result may arrive before the synchronous answer was recorded (Queued ->
# Completed). A queue timeout says nothing certain about the money: Unknown, resolved later by
# a Transaction Status query.
# A reversal waits for a second Accounts Manager (Awaiting Approval -> Queued, or Rejected and
# never sent). A user never moves any of these: only the app's own code, along these edges.
INITIATOR = {
	"Draft": {"Queued"},
	"Awaiting Approval": {"Queued", "Rejected"},
	"Queued": {"Sent", "Completed", "Failed", "Unknown"},
	"Sent": {"Completed", "Failed", "Unknown"},
	"Unknown": {"Completed", "Failed"},
}
INITIATOR_FINAL = frozenset({"Completed", "Failed", "Rejected"})

# STK result codes that are not plain failures (Daraja's list; everything else non-zero fails).
STK_CANCELLED = {"1032"}
STK_TIMEOUT = {"1037", "1019"}

# Transaction Status answers that settle an earlier payment.
STATUS_COMPLETED = {"completed"}
STATUS_FAILED = {"failed", "declined", "cancelled", "expired"}


def can_move(machine, current, new):
	"""True when ``machine`` (STK or INITIATOR) has the edge current -> new."""
	return new in machine.get(current, ())


def result_code_text(code):
	"""Daraja sends result codes as numbers or strings (0, "0", "SFC_IC0003"): compare as text."""
	return "" if code is None else str(code).strip()


def stk_outcome(result_code):
	"""The Express Request status for an STK callback's or query's ResultCode."""
	code = result_code_text(result_code)
	if code == "0":
		return "Success"
	if code in STK_CANCELLED:
		return "Cancelled"
	if code in STK_TIMEOUT:
		return "Timeout"
	return "Failed"


def initiator_outcome(kind, success):
	"""The status a result ("result") or queue-timeout ("timeout") callback moves a request to."""
	if kind == "timeout":
		return "Unknown"
	return "Completed" if success else "Failed"


def transaction_status_outcome(success, transaction_status):
	"""What a Transaction Status result says about the transaction it asked about, or None.

	Only a definite answer settles a payment: a failed query (unknown id, busy system) is not
	evidence that the payment failed.
	"""
	if not success:
		return None
	status = (transaction_status or "").strip().lower()
	if status in STATUS_COMPLETED:
		return "Completed"
	if status in STATUS_FAILED:
		return "Failed"
	return None
