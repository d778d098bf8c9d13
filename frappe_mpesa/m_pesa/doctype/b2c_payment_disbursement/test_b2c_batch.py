# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""B2C batches on any site (Frappe alone is enough): payees from a CSV checked with the core's
rules, maker is not checker per payee, one request per payee from a thread pool, a worker killed
mid-batch resumed without resending, random faults, and the Transaction Status that settles what
is unknown."""

import os
import subprocess
import sys
import time

import frappe

from frappe_mpesa import initiator, records
from frappe_mpesa.testing import CHECKER, MAKER, OTHER_CHECKER, ServedSandboxTestCase, wait_for

SETTINGS = "_Test B2C Batch"
DOCTYPE = "B2C Payment Disbursement"
PAYEE = "B2C Disbursement Payee"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
MODULE = "frappe_mpesa.m_pesa.doctype.b2c_payment_disbursement.b2c_payment_disbursement"


def phones(count, base=254711000000):
	"""``count`` distinct valid numbers none of which has a special sandbox outcome."""
	return [str(base + i) for i in range(1, count + 1)]


def csv_of(rows):
	return ("phone,amount,name,remarks\n" + "".join(f"{p},{a},Payee {i},Batch test\n" for i, (p, a) in enumerate(rows, 1))).encode()


class TestB2CBatch(ServedSandboxTestCase):
	SETTINGS = SETTINGS
	SHORTCODE = "600985"
	SANDBOX_OPTIONS = {"callback_delay": 0.2}

	def tearDown(self):
		frappe.set_user("Administrator")
		self.sandbox.clear_faults()

	def batch_from_csv(self, content, user=MAKER):
		frappe.set_user(user)
		from frappe_mpesa.m_pesa.doctype.b2c_payment_disbursement.b2c_payment_disbursement import batch_from_csv

		name = batch_from_csv(SETTINGS, "Batch test", content=content)
		frappe.db.commit()
		frappe.set_user("Administrator")
		return name

	def submit_as(self, user, name):
		frappe.set_user(user)
		try:
			doc = frappe.get_doc(DOCTYPE, name)
			doc.submit()
			frappe.db.commit()
		finally:
			frappe.set_user("Administrator")
		return doc

	def rows(self, name):
		frappe.db.rollback()
		return frappe.get_all(
			PAYEE,
			filters={"parent": name},
			fields=["name", "idx", "phone", "status", "originator_conversation_id", "transaction_receipt", "request_sent_on", "retry_of", "retried", "failure_confirmed"],
			order_by="idx asc",
		)

	def requests_for(self, ocids):
		return [r for r in self.sandbox.requests if r.path == B2C_PATH and r.json.get("OriginatorConversationID") in ocids]

	# ---- payees from a CSV -------------------------------------------------------------------

	def test_csv_with_a_bad_phone_on_row_7_names_it_and_imports_nothing(self):
		before = frappe.db.count(DOCTYPE)
		rows = [(p, 100) for p in phones(10, base=254711100000)]
		# Line 7 of the file is the 6th payee (the header is line 1).
		text = csv_of(rows).decode().splitlines()
		text[6] = "0712 34,100,Bad Phone,Batch test"
		with self.assertRaises(frappe.ValidationError) as caught:
			self.batch_from_csv(("\n".join(text) + "\n").encode())
		frappe.db.rollback()
		frappe.set_user("Administrator")
		self.assertIn("row 7", str(caught.exception))
		self.assertIn("phone", str(caught.exception))
		self.assertEqual(frappe.db.count(DOCTYPE), before, "nothing was imported")
		self.assertEqual(frappe.db.count(PAYEE, {"phone": rows[0][0]}), 0)

	def test_csv_batch_is_sent_once_per_payee_and_completes(self):
		rows = [(p, 100 + i) for i, p in enumerate(phones(24, base=254711200000))]
		name = self.batch_from_csv(csv_of(rows))
		doc = frappe.get_doc(DOCTYPE, name)
		self.assertEqual((doc.payee_count, doc.total_amount), (24, sum(a for _p, a in rows)))
		self.assertEqual(doc.status, "Draft")
		self.submit_as(CHECKER, name)
		stored = self.rows(name)
		ocids = {r.originator_conversation_id for r in stored}
		self.assertEqual(len(ocids), 24, "each payee has its own id, committed with the approval")
		self.assertTrue(all(r.status == "Queued" and not r.request_sent_on for r in stored))
		self.assertEqual(self.requests_for(ocids), [])
		initiator.send_batch(name)
		initiator.send_batch(name)  # a second run finds nothing to send
		sent = self.requests_for(ocids)
		self.assertEqual(len(sent), 24)
		self.assertEqual(sorted(r.json["PartyB"] for r in sent), sorted(p for p, _a in rows))
		self.assertTrue(
			wait_for(lambda: frappe.db.rollback() or frappe.db.get_value(DOCTYPE, name, "status") == "Completed", timeout=30),
			frappe.db.get_value(DOCTYPE, name, ["status", "completed_count", "in_flight_count"]),
		)
		batch = frappe.db.get_value(DOCTYPE, name, ["completed_count", "completed_amount", "in_flight_count"], as_dict=True)
		self.assertEqual((batch.completed_count, batch.completed_amount, batch.in_flight_count), (24, doc.total_amount, 0))
		self.assertTrue(all(r.transaction_receipt for r in self.rows(name)))

	# ---- maker is not checker ------------------------------------------------------------------

	def test_maker_and_a_manager_who_changed_a_payee_cannot_approve_an_accounts_user_cannot_submit(self):
		name = self.batch_from_csv(csv_of([(p, 200) for p in phones(3, base=254711300000)]), user=CHECKER)
		# The maker (an Accounts Manager here) cannot approve.
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(CHECKER, name)
		frappe.db.rollback()
		# A second Accounts Manager changes one payee's amount: now a maker too.
		frappe.set_user(OTHER_CHECKER)
		doc = frappe.get_doc(DOCTYPE, name)
		doc.payees[1].amount = 250
		doc.save()
		frappe.db.commit()
		frappe.set_user("Administrator")
		self.assertEqual(frappe.db.get_value(PAYEE, doc.payees[1].name, "payee_set_by"), OTHER_CHECKER)
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(OTHER_CHECKER, name)
		frappe.db.rollback()
		# An Accounts User cannot submit at all.
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(MAKER, name)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value(DOCTYPE, name, "docstatus"), 0)
		# Changing only the batch's remarks makes no maker.
		frappe.set_user("Administrator")
		doc = frappe.get_doc(DOCTYPE, name)
		doc.remarks = "Batch test, reworded"
		doc.save()
		frappe.db.commit()
		self.assertNotIn("Administrator", frappe.get_doc(DOCTYPE, name).makers())
		with self.assertRaises(frappe.PermissionError):
			self.submit_as(OTHER_CHECKER, name)
		frappe.db.rollback()

	def test_change_after_approval_voids_that_payee_only(self):
		rows = [(p, 300) for p in phones(3, base=254711400000)]
		name = self.batch_from_csv(csv_of(rows))
		self.submit_as(CHECKER, name)
		stored = self.rows(name)
		frappe.db.set_value(PAYEE, stored[0].name, "phone", "254711499999")
		frappe.db.commit()
		initiator.send_batch(name)
		after = {r.name: r for r in self.rows(name)}
		self.assertEqual(after[stored[0].name].status, "Failed")
		self.assertFalse(after[stored[0].name].request_sent_on)
		self.assertEqual(self.requests_for({stored[0].originator_conversation_id}), [])
		self.assertEqual(len(self.requests_for({r.originator_conversation_id for r in stored[1:]})), 2)

	def test_balance_warning_before_approval(self):
		request = frappe.get_doc(
			{
				"doctype": "Mpesa Initiator Request",
				"request_type": "Account Balance",
				"mpesa_settings": SETTINGS,
				"status": "Completed",
				"completed_on": frappe.utils.now_datetime(),
				"balances": [{"account": "Utility Account", "currency": "KES", "current": 500, "available": 500}],
			}
		)
		request.flags.ignore_permissions = True
		request.insert()
		frappe.db.commit()
		small = self.batch_from_csv(csv_of([(p, 100) for p in phones(2, base=254711500000)]))
		big = self.batch_from_csv(csv_of([(p, 400) for p in phones(2, base=254711510000)]))
		self.assertFalse(frappe.db.get_value(DOCTYPE, small, "balance_warning"))
		self.assertIn("500", frappe.db.get_value(DOCTYPE, big, "balance_warning"))

	# ---- a worker killed mid-batch, random faults, Transaction Status --------------------------

	def test_killed_worker_and_random_faults_pay_no_one_twice(self):
		count = 60
		rows = [(p, 100 + i) for i, p in enumerate(phones(count, base=254711600000))]
		name = self.batch_from_csv(csv_of(rows))
		self.submit_as(CHECKER, name)
		ocids = {r.originator_conversation_id for r in self.rows(name)}
		# 10% of B2C requests fail at random (half answered 503 before anything happens, half
		# processed and their answer lost), and every request is slowed so the kill lands mid-batch.
		self.sandbox.fault(B2C_PATH, "random", rate=0.1, seed=7, then="status", wait=0.15)
		worker = subprocess.Popen(
			[
				sys.executable,
				"-m",
				"frappe.utils.bench_helper",
				"frappe",
				"--site",
				frappe.local.site,
				"execute",
				"frappe_mpesa.initiator.send_batch",
				"--kwargs",
				repr({"name": name}),
			],
			cwd=os.path.abspath(frappe.local.sites_path),
			stdout=subprocess.DEVNULL,
			stderr=subprocess.DEVNULL,
			start_new_session=True,
		)
		try:
			self.assertTrue(wait_for(lambda: len(self.requests_for(ocids)) >= 20, timeout=60), "the worker sent")
		finally:
			worker.kill()
			worker.wait(10)
		at_kill = len(self.requests_for(ocids))
		self.assertLess(at_kill, count, "killed mid-batch")
		# The second half: answers lost after the money moved.
		self.sandbox.clear_faults()
		self.sandbox.fault(B2C_PATH, "random", rate=0.1, seed=11, then="reset", processed=True)
		initiator.send_batch(name)  # the resumed worker
		initiator.send_batch(name)
		self.sandbox.clear_faults()
		sent = self.requests_for(ocids)
		by_ocid, by_phone = {}, {}
		for r in sent:
			by_ocid[r.json["OriginatorConversationID"]] = by_ocid.get(r.json["OriginatorConversationID"], 0) + 1
			by_phone[r.json["PartyB"]] = by_phone.get(r.json["PartyB"], 0) + 1
		self.assertEqual(max(by_ocid.values()), 1, "no request was sent twice")
		self.assertEqual(max(by_phone.values()), 1, "no payee was paid twice")
		paid = [p for p in self.sandbox.payments.values() if p.get("kind") == "b2c" and str(p.get("credit_party", p.get("msisdn", ""))) in {ph for ph, _a in rows}]
		self.assertLessEqual(len(paid), count)
		frappe.db.rollback()
		# Results land through the served site; then whatever is still Sent or Unknown is asked about.
		wait_for(lambda: frappe.db.rollback() or not frappe.db.count(PAYEE, {"parent": name, "status": "Queued"}), timeout=30)
		wait_for(lambda: frappe.db.rollback() or not frappe.db.count(PAYEE, {"parent": name, "status": "Sent"}), timeout=15)
		statuses = {r.status for r in self.rows(name)}
		self.assertLessEqual(statuses, {"Completed", "Failed", "Unknown", "Sent"}, statuses)
		unresolved_before = [r for r in self.rows(name) if r.status in ("Unknown", "Sent")]
		self.assertTrue(unresolved_before, "the kill and the lost answers left payees unknown")
		frappe.set_user(OTHER_CHECKER)
		frappe.get_attr(MODULE + ".query_unresolved")(name)
		frappe.set_user("Administrator")

		received = {r.json["OriginatorConversationID"] for r in self.requests_for(ocids)}

		def settled():
			frappe.db.rollback()
			return all(
				r.status in ("Completed", "Failed") for r in self.rows(name) if r.originator_conversation_id in received and r.status != "Failed"
			)

		self.assertTrue(wait_for(settled, timeout=40), [(r.idx, r.status) for r in self.rows(name) if r.status not in ("Completed", "Failed")])
		final = self.rows(name)
		self.assertTrue(all(r.status in ("Completed", "Failed", "Unknown") for r in final))
		# Unknown only where Daraja never received the request (killed between claim and send):
		# Transaction Status finds nothing, so it stays for a person, and nothing is resent.
		for r in final:
			if r.status == "Unknown":
				self.assertNotIn(r.originator_conversation_id, received)
		self.assertEqual(len(self.requests_for(ocids)), len(received), "the queries sent no payment")
		batch = frappe.db.get_value(DOCTYPE, name, ["completed_count", "failed_count", "unknown_count", "in_flight_count"], as_dict=True)
		self.assertEqual(batch.completed_count + batch.failed_count + batch.unknown_count, count)
		self.assertEqual(batch.in_flight_count, 0)

	def test_only_confirmed_failures_are_retried_by_a_person(self):
		unconfirmed, confirmed, fine = "254711700001", "254700000001", "254711700003"
		name = self.batch_from_csv(csv_of([(unconfirmed, 100), (confirmed, 100), (fine, 100)]))
		self.submit_as(CHECKER, name)
		stored = self.rows(name)
		# One at a time, in order: the first payee's request is answered 503 (nothing certain); the
		# second's result says the balance is insufficient (Daraja's word: it failed).
		self.sandbox.fault(B2C_PATH, "status", times=1, status=503)
		initiator.send_batch(name, workers=1)
		self.assertTrue(
			wait_for(lambda: frappe.db.rollback() or not frappe.db.count(PAYEE, {"parent": name, "status": ("in", ("Queued", "Sent"))}), timeout=20)
		)
		after = {r.idx: r for r in self.rows(name)}
		self.assertEqual([after[i].status for i in (1, 2, 3)], ["Failed", "Failed", "Completed"])
		self.assertEqual([after[i].failure_confirmed for i in (1, 2)], [0, 1])
		sent_before = self.sandbox.count(B2C_PATH)
		# The maker cannot retry; another Accounts Manager can, and only the confirmed failure goes again.
		frappe.set_user(MAKER)
		with self.assertRaises(frappe.PermissionError):
			frappe.get_attr(MODULE + ".retry_failed")(name)
		frappe.db.rollback()
		frappe.set_user(OTHER_CHECKER)
		made = frappe.get_attr(MODULE + ".retry_failed")(name)
		frappe.set_user("Administrator")
		frappe.db.commit()
		self.assertEqual(len(made), 1)
		self.assertEqual(frappe.db.get_value(PAYEE, made[0], "retry_of"), stored[1].name)
		new_ocid = frappe.db.get_value(PAYEE, made[0], "originator_conversation_id")
		self.assertNotIn(new_ocid, {r.originator_conversation_id for r in stored})
		initiator.send_batch(name)
		self.assertEqual(self.sandbox.count(B2C_PATH), sent_before + 1)
		self.assertEqual(len(self.requests_for({new_ocid})), 1)
		wait_for(lambda: frappe.db.rollback() or frappe.db.get_value(PAYEE, made[0], "status") == "Failed", timeout=20)
		frappe.set_user(OTHER_CHECKER)
		again = frappe.get_attr(MODULE + ".retry_failed")(name)
		frappe.set_user("Administrator")
		frappe.db.rollback()
		self.assertEqual(len(again), 1, "the retry failed again, confirmed: one more retry of it")
		self.assertEqual(frappe.db.get_value(PAYEE, again[0], "retry_of"), made[0])

	# ---- a single disbursement from before batches ----------------------------------------------

	def test_single_disbursement_is_migrated_to_a_batch_of_one(self):
		if not frappe.db.has_column(DOCTYPE, "phone"):
			self.skipTest("this site never had single-payee disbursements")
		from frappe_mpesa.patches import b2c_single_to_batch

		name = f"TEST-OLD-{frappe.generate_hash(length=6)}"
		ocid = f"OLD-OC-{frappe.generate_hash(length=8)}"
		frappe.db.sql(
			f"""insert into `tab{DOCTYPE}` (name, docstatus, status, mpesa_settings, command_id, remarks, phone,
				amount, originator_conversation_id, conversation_id, request_sent_on, creation, modified, owner)
			values (%s, 1, 'Sent', %s, 'BusinessPayment', 'Old refund', '254711800001', 120, %s, %s, now(), now(), now(), 'Administrator')""",
			(name, SETTINGS, ocid, f"AG_{ocid}"),
		)
		frappe.db.commit()
		b2c_single_to_batch.execute()
		row = frappe.db.get_value(PAYEE, {"parent": name}, ["name", "status", "phone", "amount", "originator_conversation_id"], as_dict=True)
		self.assertEqual((row.name, row.status, row.phone, row.amount, row.originator_conversation_id), (name, "Sent", "254711800001", 120, ocid))
		self.assertEqual(frappe.db.get_value(DOCTYPE, name, ["status", "payee_count"]), ("Sending", 1))
		self.assertEqual(records.lock_payee("originator_conversation_id", ocid).name, name)
		frappe.db.rollback()
		b2c_single_to_batch.execute()  # again: nothing more
		self.assertEqual(frappe.db.count(PAYEE, {"parent": name}), 1)
