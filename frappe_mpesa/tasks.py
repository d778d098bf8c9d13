"""Scheduled jobs: resolve what no callback resolved."""

import frappe
from frappe.utils import add_to_date, now_datetime

from frappe_mpesa import initiator, pull, records
from frappe_mpesa.api import query_express_request
from frappe_mpesa.settings_store import DarajaCallError

# An STK prompt lives about a minute; query after that, give up querying after a day.
STK_QUERY_AFTER_MINUTES = 2
STK_MAX_QUERIES = 30
# A push with no answer for this long never reached Daraja's acceptance: nothing to query.
STK_UNANSWERED_MINUTES = 10


def query_pending_stk(limit=50):
	"""STK query every Pending Express Request whose callback has not come."""
	cutoff = add_to_date(now_datetime(), minutes=-STK_QUERY_AFTER_MINUTES)
	names = frappe.get_all(
		records.EXPRESS,
		filters={
			"status": "Pending",
			"request_sent_on": ("<", cutoff),
			"query_attempts": ("<", STK_MAX_QUERIES),
		},
		pluck="name",
		order_by="request_sent_on asc",
		limit=limit,
	)
	for name in names:
		try:
			query_express_request(name)
		except (DarajaCallError, frappe.ValidationError):
			frappe.db.rollback()
			frappe.log_error(title=f"STK query for {name} failed")
			frappe.db.commit()


def resolve_disbursements():
	initiator.resolve_disbursements()


def match_unmatched_callbacks():
	"""Apply kept callbacks whose record has appeared since (e.g. committed after the callback)."""
	if records.match_unmatched():
		frappe.db.commit()


def pull_transactions():
	"""Pull runs for the settings records whose pull schedule is due (checked every minute)."""
	pull.run_due()
