# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class MpesaCallbackLog(Document):
	# Written only by the app (callbacks, queries, jobs), never edited from Desk.
	pass
