# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document

from frappe_mpesa import guards


class MpesaInitiatorRequest(Document):
	# Written only by the app (callbacks, queries, jobs) through the database, never saved by a
	# user: not from Desk, REST or frappe.client, whatever the permissions say.
	def validate(self):
		guards.refuse_user_save(self)
