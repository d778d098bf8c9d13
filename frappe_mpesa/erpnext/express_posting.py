"""A successful STK push started from a Payment Request becomes its Payment Entry (doc_events).

``records`` moves an Mpesa Express Request to Success through ``db_set``, which runs its
``on_change`` hooks in the transaction of the move; Success is final and the row is locked, so
this runs once per request. ``payment_requests.on_express_success`` does the work (and keeps
its failure on the request rather than undoing the Success).
"""

from frappe_mpesa import payment_requests

SUCCESS = "Success"


def on_change(doc, method=None):
	before = doc.get_doc_before_save()
	if doc.status == SUCCESS and before is not None and before.status != SUCCESS:
		payment_requests.on_express_success(doc.name)
