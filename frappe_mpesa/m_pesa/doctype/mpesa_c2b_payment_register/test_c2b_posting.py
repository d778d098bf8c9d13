# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Collections into the books (ERPNext): C2B confirmations arriving through the served site are
matched and posted as Payment Entries by the posting job, exactly once; cancelling and reversing;
C2B validation judging cancelled and paid documents. Needs ERPNext with a KES company (skips,
saying why, otherwise). The posting job is called directly here, as the queue's worker would."""

import hashlib
import json
import multiprocessing
import threading
import unittest

import frappe
from frappe.utils import flt

from frappe_mpesa import api, daraja, settings_store, urls
from frappe_mpesa.erpnext import c2b_posting, reversal
from frappe_mpesa.testing import (
	ErpnextRecords,
	ServedSandboxTestCase,
	delete_settings,
	erpnext_missing,
	post,
	remove_document,
	wait_for,
)

SETTINGS = "_Test C2B Posting"
C2B = "Mpesa C2B Payment Register"
PE = "Payment Entry"
COPIES = 50
WORKERS = 6


def post_worker(site, sites_path, trans_id, barrier):
	"""One worker process running the posting job for ``trans_id`` at the same moment as others."""
	frappe.init(site=site, sites_path=sites_path)
	frappe.connect()
	try:
		barrier.wait(60)
		status = c2b_posting.post_receipt(trans_id, force=True)
		frappe.db.commit()
		return status
	finally:
		frappe.destroy()


DIGITS = str.maketrans("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "01234567890123456789012345" * 2)


class DollarBooks:
	"""What a USD customer needs on the KES company: USD enabled, a USD receivable account and
	USD to KES exchange rates by date, removed afterwards (with the ledger rows naming that
	account, which only this test's documents used)."""

	def __init__(self, company, tag):
		self.company, self.tag = company, tag
		self.account = None
		self.rates = []
		self.enabled_before = frappe.db.get_value("Currency", "USD", "enabled")

	def make(self, rates):
		frappe.db.set_value("Currency", "USD", "enabled", 1)
		receivable = frappe.get_cached_value("Company", self.company, "default_receivable_account")
		account = frappe.get_doc(
			{
				"doctype": "Account",
				"company": self.company,
				"account_name": f"_Test Debtors USD {self.tag}",
				"parent_account": frappe.db.get_value("Account", receivable, "parent_account"),
				"account_type": "Receivable",
				"account_currency": "USD",
			}
		).insert(ignore_permissions=True)
		self.account = account.name
		for day, rate in rates.items():
			if frappe.db.exists("Currency Exchange", {"date": day, "from_currency": "USD", "to_currency": "KES"}):
				raise unittest.SkipTest(f"the site has its own USD to KES rate for {day}")
			self.rates.append(
				frappe.get_doc(
					{
						"doctype": "Currency Exchange",
						"date": day,
						"from_currency": "USD",
						"to_currency": "KES",
						"exchange_rate": rate,
						"for_buying": 1,
						"for_selling": 1,
					}
				)
				.insert(ignore_permissions=True)
				.name
			)
		frappe.db.commit()
		return self

	def remove_rates(self):
		for name in self.rates:
			frappe.delete_doc("Currency Exchange", name, force=True, ignore_permissions=True)
		self.rates = []
		frappe.db.commit()

	def remove(self):
		"""After the test's documents are cancelled: the class's clean-up runs later, so they are
		cancelled and deleted here first."""
		frappe.set_user("Administrator")
		frappe.db.rollback()
		self.remove_rates()
		if self.account:
			for doctype in ("Payment Entry", "Sales Invoice"):
				field = "paid_from" if doctype == "Payment Entry" else "debit_to"
				for name in frappe.get_all(doctype, filters={field: self.account}, pluck="name"):
					remove_document(doctype, name)
			for table in ("GL Entry", "Payment Ledger Entry"):
				frappe.db.delete(table, {"account": self.account})
			frappe.db.delete("Party Account", {"account": self.account})
			frappe.delete_doc("Account", self.account, force=True, ignore_permissions=True)
		frappe.db.set_value("Currency", "USD", "enabled", self.enabled_before)
		frappe.db.commit()


class TestC2BPosting(ErpnextRecords, ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SANDBOX_OPTIONS = {"callback_delay": 0.1, "c2b_validation": True}
	REQUIRES = staticmethod(erpnext_missing)

	@classmethod
	def setUpClass(cls):
		frappe.set_user("Administrator")
		delete_settings(SETTINGS)
		super().setUpClass()
		cls.make_records("C2B")

	@classmethod
	def tearDownClass(cls):
		cls.remove_records()
		super().tearDownClass()

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_allow_advances", 0)
		frappe.db.commit()

	# ---- data ---------------------------------------------------------------------------

	def trans_id(self):
		TestC2BPosting.count = getattr(TestC2BPosting, "count", 0) + 1
		return f"T{self.tag}{TestC2BPosting.count:03d}"[:10]

	def url(self, kind):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		return urls.callback_url(
			settings.callback_base_url, kind, settings.callback_id, settings.get_password("callback_secret")
		)

	def body(self, trans_id, reference, amount, msisdn="254708374149", when=None):
		return json.dumps(
			{
				"TransactionType": "Pay Bill",
				"TransID": trans_id,
				"TransTime": (when or frappe.utils.now_datetime()).strftime("%Y%m%d%H%M%S"),
				"TransAmount": f"{amount:.2f}",
				"BusinessShortCode": self.shortcode,
				"BillRefNumber": reference,
				"InvoiceNumber": "",
				"OrgAccountBalance": "",
				"ThirdPartyTransID": "",
				"MSISDN": msisdn,
				"FirstName": "Wanjiku",
				"MiddleName": "",
				"LastName": "Kamau",
			}
		).encode()

	def confirm(self, reference, amount, trans_id=None, **body):
		"""A confirmation through the served site, then the posting job; the register row."""
		trans_id = trans_id or self.trans_id()
		status, text = post(self.url("c2b_confirmation"), self.body(trans_id, reference, amount, **body))
		self.assertEqual((status, text), (200, daraja.ack()))
		c2b_posting.post_receipt(trans_id)
		frappe.db.commit()
		return frappe.get_doc(C2B, trans_id)

	def entries(self, trans_id):
		return frappe.get_all(PE, filters={"reference_no": trans_id, "docstatus": 1}, pluck="name")

	# ---- setup per shortcode ---------------------------------------------------------------

	def test_settings_get_their_accounting(self):
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		self.assertEqual(settings.company, self.company)
		account = frappe.db.get_value(
			"Account", settings.mpesa_account, ["company", "account_type"], as_dict=True
		)
		self.assertEqual((account.company, account.account_type), (self.company, "Bank"))
		self.assertTrue(
			frappe.db.exists(
				"Mode of Payment Account",
				{
					"parent": settings.mode_of_payment,
					"company": self.company,
					"default_account": settings.mpesa_account,
				},
			)
		)
		self.assertEqual(
			[row.reference_doctype for row in settings.c2b_matching_rules],
			["Sales Invoice", "Sales Order", "POS Invoice", "Customer"],
		)
		settings.mpesa_account = frappe.db.get_value(
			"Account", {"company": self.company, "account_type": "Receivable", "is_group": 0}
		)
		with self.assertRaises(frappe.ValidationError):
			settings.save()
		frappe.db.rollback()

	# ---- posting ---------------------------------------------------------------------------

	def test_invoice_number_pays_the_invoice(self):
		si = self.invoice(self.customer(), 1500)
		row = self.confirm(si.name, 1500)
		self.assertEqual(row.status, "Posted")
		entries = self.entries(row.name)
		self.assertEqual(entries, [row.payment_entry])
		pe = frappe.get_doc(PE, row.payment_entry)
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		self.assertEqual(
			(pe.reference_no, pe.party, pe.paid_to, pe.mode_of_payment, str(pe.reference_date)),
			(row.name, si.customer, settings.mpesa_account, settings.mode_of_payment, str(row.trans_time)[:10]),
		)
		self.assertEqual((row.customer, flt(pe.paid_amount)), (si.customer, 1500))
		self.assertIn("Wanjiku Kamau", pe.remarks)
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 0)
		self.assertEqual(frappe.db.get_value("Sales Invoice", si.name, "status"), "Paid")

	def test_normalised_number_without_prefix_matches(self):
		si = self.invoice(self.customer(), 200)
		frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_account_prefix", "ACC-")
		frappe.db.commit()
		try:
			typed = si.name.replace("ACC-", "").replace("-", " ").lower()
			row = self.confirm(typed, 200)
		finally:
			frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_account_prefix", None)
			frappe.db.commit()
		self.assertEqual(
			(row.reference_doctype, row.reference_name, row.status), ("Sales Invoice", si.name, "Posted")
		)

	def test_customer_name_pays_oldest_invoices_first(self):
		customer = self.customer()
		# Made newest first: the order of creation must not be what decides.
		newest, middle, oldest = (self.invoice(customer, 1000, days) for days in (10, 20, 30))
		row = self.confirm(customer, 2500)
		self.assertEqual(row.status, "Posted")
		outstanding = {
			si.name: flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount"))
			for si in (oldest, middle, newest)
		}
		self.assertEqual(outstanding, {oldest.name: 0, middle.name: 0, newest.name: 500})
		pe = frappe.get_doc(PE, row.payment_entry)
		self.assertEqual(flt(pe.unallocated_amount), 0)
		self.assertEqual(len(pe.references), 3)

	def test_excess_stays_an_advance(self):
		customer = self.customer()
		si = self.invoice(customer, 300)
		row = self.confirm(customer, 500)
		self.assertEqual(row.status, "Partly allocated")
		pe = frappe.get_doc(PE, row.payment_entry)
		self.assertEqual((flt(pe.unallocated_amount), pe.references[0].reference_name), (200, si.name))

	def test_sales_order_gets_an_advance(self):
		so = self.order(self.customer(), 4000)
		row = self.confirm(so.name, 1000)
		self.assertEqual(row.status, "Posted")
		pe = frappe.get_doc(PE, row.payment_entry)
		reference = pe.references[0]
		self.assertEqual((reference.reference_doctype, reference.reference_name), ("Sales Order", so.name))
		self.assertEqual(flt(frappe.db.get_value("Sales Order", so.name, "advance_paid")), 1000)

	def test_unknown_reference_is_unmatched(self):
		row = self.confirm(f"NOTHING{self.tag}", 50)
		self.assertEqual((row.status, row.payment_entry), ("Unmatched", None))
		self.assertEqual(self.entries(row.name), [])
		self.assertTrue(row.processed_on)

	def test_invoice_in_dollars_is_paid_at_the_days_rate(self):
		"""A USD invoice (a USD receivable account, on the KES company) paid by a KES receipt of
		yesterday: at yesterday's rate, not today's."""
		yesterday = frappe.utils.add_days(frappe.utils.nowdate(), -1)
		books = DollarBooks(self.company, self.tag).make({yesterday: 128, frappe.utils.nowdate(): 131})
		self.addCleanup(books.remove)
		customer = self.customer(default_currency="USD", accounts=[{"company": self.company, "account": books.account}])
		si = self.invoice(customer, 100, days_ago=1, currency="USD", conversion_rate=128, debit_to=books.account)
		self.assertEqual((si.party_account_currency, flt(si.outstanding_amount)), ("USD", 100))
		when = frappe.utils.get_datetime(f"{yesterday} 12:00:00")
		row = self.confirm(si.name, 12800, when=when)
		self.assertEqual(row.status, "Posted", row.posting_note)
		pe = frappe.get_doc(PE, row.payment_entry)
		self.assertEqual(
			(pe.paid_from, pe.paid_from_account_currency, pe.paid_to_account_currency, str(pe.posting_date)),
			(books.account, "USD", "KES", yesterday),
		)
		self.assertEqual((flt(pe.source_exchange_rate), flt(pe.paid_amount), flt(pe.received_amount)), (128, 100, 12800))
		self.assertEqual([(r.reference_name, flt(r.allocated_amount)) for r in pe.references], [(si.name, 100)])
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 0)
		# Without a rate for the day, nothing is posted and the row says why.
		books.remove_rates()
		other = self.invoice(customer, 10, days_ago=1, currency="USD", conversion_rate=128, debit_to=books.account)
		row = self.confirm(other.name, 1280, when=when)
		self.assertEqual((row.status, row.payment_entry), ("Matched", None))
		self.assertIn("no exchange rate from USD to KES", row.posting_note)

	def test_payer_phone_matches_a_contact_last(self):
		"""Match Payer Phone: a v1 MSISDN, plain or hashed as Daraja hashes it, finds the Contact whose
		phone (written any way) hashes the same, and so its Customer; a v2 masked one never does."""
		customer = self.customer()
		si = self.invoice(customer, 300)
		national = f"7{frappe.utils.random_string(8).translate(DIGITS)}"
		contact = frappe.get_doc(
			{
				"doctype": "Contact",
				"first_name": f"Payer {self.tag}",
				"phone_nos": [{"phone": f"0{national[:3]} {national[3:6]} {national[6:]}", "is_primary_phone": 1}],
				"links": [{"link_doctype": "Customer", "link_name": customer}],
			}
		).insert(ignore_permissions=True)
		self.made.append(("Contact", contact.name))
		frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_match_phone", 1)
		frappe.db.commit()
		self.addCleanup(lambda: (frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_match_phone", 0), frappe.db.commit()))
		plain = f"254{national}"
		hashed = hashlib.sha256(plain.encode()).hexdigest()
		for msisdn in (plain, hashed.upper()):
			row = self.confirm(f"NOTHING{self.tag}", 100, msisdn=msisdn)
			self.assertEqual(
				(row.status, row.reference_doctype, row.reference_name, row.customer),
				("Posted", "Contact", contact.name, customer),
				(msisdn, row.posting_note),
			)
			self.assertEqual(frappe.get_doc(PE, row.payment_entry).references[0].reference_name, si.name)
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 100)
		masked = f"2547{'*' * 5}{national[-3:]}"
		row = self.confirm(f"NOTHING{self.tag}", 100, msisdn=masked)
		self.assertEqual((row.status, row.payment_entry, row.customer), ("Unmatched", None, None))
		# The account number still comes first: a document it names wins over the phone.
		named = self.invoice(self.customer(), 50)
		row = self.confirm(named.name, 50, msisdn=plain)
		self.assertEqual((row.reference_doctype, row.reference_name, row.status), ("Sales Invoice", named.name, "Posted"))

	def test_fifty_concurrent_copies_give_one_row_and_one_entry(self):
		si = self.invoice(self.customer(), 700)
		trans_id = self.trans_id()
		body = self.body(trans_id, si.name, 700)
		url = self.url("c2b_confirmation")
		answers = []

		def send():
			answers.append(post(url, body, timeout=60))

		threads = [threading.Thread(target=send) for _ in range(COPIES)]
		for thread in threads:
			thread.start()
		for thread in threads:
			thread.join(90)
		self.assertEqual(answers.count((200, daraja.ack())), COPIES, answers[:3])
		frappe.db.rollback()
		self.assertEqual(frappe.db.count(C2B, {"trans_id": trans_id}), 1)
		# The job run by several workers at once, as retries and the sweep could.
		context = multiprocessing.get_context("spawn")
		barrier = context.Manager().Barrier(WORKERS)
		with context.Pool(WORKERS) as pool:
			statuses = pool.starmap(
				post_worker, [(frappe.local.site, frappe.local.sites_path, trans_id, barrier)] * WORKERS
			)
		self.assertIn("Posted", statuses)
		frappe.db.rollback()
		self.assertEqual(len(self.entries(trans_id)), 1)
		self.assertEqual(frappe.db.get_value(C2B, trans_id, "payment_entry"), self.entries(trans_id)[0])

	def test_the_database_refuses_a_second_link_to_one_entry(self):
		first = self.confirm(self.invoice(self.customer(), 100).name, 100)
		second = self.confirm(f"NOTHING{self.tag}", 100)
		import pymysql

		with self.assertRaises((frappe.UniqueValidationError, pymysql.err.IntegrityError)):
			frappe.db.set_value(C2B, second.name, "payment_entry", first.payment_entry)
		frappe.db.rollback()

	# ---- cancel and reverse ----------------------------------------------------------------

	def test_cancelling_the_entry_leaves_the_receipt_unallocated(self):
		si = self.invoice(self.customer(), 900)
		row = self.confirm(si.name, 900)
		pe = frappe.get_doc(PE, row.payment_entry)
		pe.cancel()
		frappe.db.commit()
		row.reload()
		self.assertEqual((row.status, row.payment_entry), ("Matched", None))
		self.assertTrue(frappe.db.exists(C2B, row.name))
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 900)
		# Processed once: the sweep leaves it alone; a person posts it again.
		self.assertEqual(c2b_posting.post_receipt(row.name), "Matched")
		self.assertEqual(c2b_posting.repost(row.name), "Posted")
		frappe.db.commit()
		self.assertEqual(len(self.entries(row.name)), 1)

	def test_only_accounts_managers_cancel_or_reverse(self):
		from frappe_mpesa.testing import CHECKER, MAKER

		row = self.confirm(self.invoice(self.customer(), 120).name, 120)
		pe = frappe.get_doc(PE, row.payment_entry)
		frappe.set_user(MAKER)  # Accounts User
		try:
			self.assertTrue(frappe.has_permission(C2B, "read", row.name))
			self.assertRaises(frappe.PermissionError, pe.cancel)
			self.assertRaises(frappe.PermissionError, reversal.reverse, row.name)
			self.assertRaises(frappe.PermissionError, c2b_posting.repost, row.name)
		finally:
			frappe.set_user("Administrator")
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value(PE, pe.name, "docstatus"), 1)
		perms = frappe.get_meta(C2B).permissions
		self.assertFalse(any(p.write or p.create or p.delete for p in perms if p.role == "Accounts User"))
		frappe.set_user(CHECKER)  # Accounts Manager
		try:
			pe.reload()
			pe.cancel()
		finally:
			frappe.set_user("Administrator")
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value(C2B, row.name, "status"), "Matched")

	def test_reversal_result_cancels_the_entry(self):
		api.register_c2b_urls(SETTINGS)
		si = self.invoice(self.customer(), 60)
		settings = frappe.get_doc("Mpesa Settings", SETTINGS)
		answer = settings_store.call(
			settings,
			"c2b_simulate",
			shortcode=self.shortcode,
			amount=60,
			phone="254708374149",
			bill_ref_number=si.name,
		)
		self.assertEqual(str(answer.get("ResponseCode")), "0")
		filters = {"mpesa_settings": SETTINGS, "bill_ref_number": si.name}
		self.assertTrue(wait_for(lambda: frappe.db.get_value(C2B, filters), timeout=20), self.sandbox.callbacks)
		trans_id = frappe.db.get_value(C2B, filters)
		self.assertEqual(c2b_posting.post_receipt(trans_id), "Posted")
		frappe.db.commit()
		entry = frappe.db.get_value(C2B, trans_id, "payment_entry")
		request = reversal.reverse(trans_id, "Wrong till")
		self.assertEqual(frappe.db.get_value("Mpesa Initiator Request", request, "status"), "Awaiting Approval")
		self.assertEqual(frappe.db.get_value(PE, entry, "docstatus"), 1)
		from frappe_mpesa.testing import CHECKER

		frappe.set_user(CHECKER)  # another Accounts Manager approves, and so sends it
		try:
			api.approve_reversal(request)
		finally:
			frappe.set_user("Administrator")
		self.assertTrue(
			wait_for(lambda: frappe.db.get_value(C2B, trans_id, "status") == "Reversed", timeout=20),
			frappe.db.get_value("Mpesa Initiator Request", request, ["status", "result_desc"]),
		)
		self.assertEqual(frappe.db.get_value(PE, entry, "docstatus"), 2)
		self.assertIsNone(frappe.db.get_value(C2B, trans_id, "payment_entry"))
		self.assertEqual(flt(frappe.db.get_value("Sales Invoice", si.name, "outstanding_amount")), 60)
		with self.assertRaises(frappe.ValidationError):
			reversal.reverse(trans_id)

	# ---- validation ------------------------------------------------------------------------

	def test_validation_rejects_cancelled_and_paid_documents(self):
		url = self.url("c2b_validation")
		customer = self.customer()
		open_si, paid_si, cancelled_si = (self.invoice(customer, 80) for _ in range(3))
		self.confirm(paid_si.name, 80)
		cancelled_si.reload()
		cancelled_si.cancel()
		frappe.db.commit()
		self.assertEqual(post(url, self.body(self.trans_id(), open_si.name, 80))[1], daraja.c2b_accept())
		self.assertEqual(post(url, self.body(self.trans_id(), f"NOTHING{self.tag}", 80))[1], daraja.c2b_accept())
		reject = daraja.c2b_reject("C2B00012")
		self.assertEqual(post(url, self.body(self.trans_id(), cancelled_si.name, 80))[1], reject)
		self.assertEqual(post(url, self.body(self.trans_id(), paid_si.name, 80))[1], reject)
		self.assertEqual(post(url, self.body(self.trans_id(), open_si.name, 81))[1], reject)
		frappe.db.set_value("Mpesa Settings", SETTINGS, "c2b_allow_advances", 1)
		frappe.db.commit()
		self.assertEqual(post(url, self.body(self.trans_id(), paid_si.name, 80))[1], daraja.c2b_accept())
		self.assertEqual(post(url, self.body(self.trans_id(), cancelled_si.name, 80))[1], reject)

