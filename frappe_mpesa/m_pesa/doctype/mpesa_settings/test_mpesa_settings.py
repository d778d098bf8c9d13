# Copyright (c) 2026, frappe_mpesa developers and contributors
# For license information, please see license.txt

"""Mpesa Settings: validation, generated callback credentials, the Desk buttons against the
sandbox, and one token for all the site's processes."""

import multiprocessing
import time

import frappe

from frappe_mpesa import api, settings_store, urls
from frappe_mpesa.testing import (
	MpesaTestCase,
	SandboxSite,
	SiteLeftovers,
	delete_settings,
	make_settings,
	token_worker,
)

SETTINGS = "_Test Settings"
BASE = "https://shop.example.com"
OAUTH = "/oauth/v1/generate"
WORKERS = 8


class TestMpesaSettings(MpesaTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.leftovers = SiteLeftovers()
		cls.sandbox_site = SandboxSite().start()
		cls.sandbox = cls.sandbox_site.sandbox

	@classmethod
	def tearDownClass(cls):
		delete_settings(SETTINGS)
		delete_settings(SETTINGS + " 2")
		cls.sandbox_site.stop()
		cls.leftovers.clean()
		super().tearDownClass()

	def setUp(self):
		self.settings = make_settings(SETTINGS, BASE)

	def cold(self):
		"""No token anywhere: not in Redis, not on the record, not in this process's clients."""
		settings_store.TokenStore(SETTINGS).forget()
		frappe.db.set_value("Mpesa Settings", SETTINGS, "token_expires_at", 0, update_modified=False)
		frappe.db.commit()
		settings_store._clients.clear()

	def test_callback_credentials_are_generated_and_urls_pass_daraja_rules(self):
		self.assertRegex(self.settings.callback_id, r"^[0-9a-f]{16}$")
		secret = self.settings.get_password("callback_secret")
		self.assertEqual(len(secret), 43)
		self.assertEqual(frappe.db.get_value("Mpesa Settings", SETTINGS, "callback_secret"), "*" * 43)
		for kind in urls.CALLBACK_ALIASES:
			url = settings_store.callback_url(self.settings, kind)
			self.assertIsNone(urls.banned_word(url), url)
			self.assertTrue(url.startswith(BASE + "/api/method/daraja_"))

	def test_base_url_must_be_https_and_free_of_banned_words(self):
		for bad in ("http://shop.example.com", "https://mpesa.shop.co.ke", "https://pay.example.com/sql"):
			self.settings.callback_base_url = bad
			with self.assertRaises(frappe.ValidationError, msg=bad):
				self.settings.save()

	def test_allowlist_and_shortcode_are_checked(self):
		self.settings.callback_allowlist = "196.201.214.200\nnot-an-address"
		self.assertRaises(frappe.ValidationError, self.settings.save)
		self.settings.reload()
		self.settings.business_shortcode = "12ab"
		self.assertRaises(frappe.ValidationError, self.settings.save)

	def test_one_record_per_shortcode(self):
		with self.assertRaises(frappe.ValidationError):
			make_settings(SETTINGS + " 2", BASE)

	def test_rotate_secret(self):
		before = self.settings.get_password("callback_secret")
		api.rotate_callback_secret(SETTINGS)
		after = frappe.get_doc("Mpesa Settings", SETTINGS).get_password("callback_secret")
		self.assertNotEqual(before, after)
		self.assertIsNone(urls.banned_word(after))

	def test_test_connection_button(self):
		self.cold()
		answer = api.test_connection(SETTINGS)
		self.assertEqual(answer["host"], self.sandbox.url)
		self.assertTrue(answer["ok"])

	def test_bad_credentials_give_a_clear_error(self):
		self.settings.consumer_secret = "wrong"
		self.settings.save()
		frappe.db.commit()
		with self.assertRaises(frappe.ValidationError) as caught:
			api.test_connection(SETTINGS)
		self.assertIn("consumer key or secret", str(caught.exception))
		self.assertNotIn("wrong", str(caught.exception))

	def test_a_new_consumer_secret_drops_the_cached_token(self):
		api.test_connection(SETTINGS)
		doc = frappe.get_doc("Mpesa Settings", SETTINGS)
		doc.consumer_secret = "wrong"
		doc.save()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Mpesa Settings", SETTINGS, "token_expires_at"), 0)
		with self.assertRaises(frappe.ValidationError):
			api.test_connection(SETTINGS)

	def test_a_failed_call_is_shown_in_desk(self):
		self.settings.consumer_secret = "wrong"
		self.settings.save()
		frappe.db.commit()
		frappe.local.message_log = []
		with self.assertRaises(frappe.ValidationError):
			api.test_connection(SETTINGS)
		shown = [message.get("message", "") for message in frappe.local.message_log]
		self.assertTrue(any("consumer key or secret" in message for message in shown), shown)

	def test_token_is_shared_through_redis_and_the_record(self):
		# A sandbox on a new port: this process's C-level token cache has nothing for that host.
		fresh = SandboxSite().start()
		self.addCleanup(lambda: (fresh.stop(), self.sandbox_site.start_config()))
		self.sandbox = fresh.sandbox
		self.cold()
		before = self.sandbox.count(OAUTH)
		token = settings_store.get_client(self.settings).access_token()
		frappe.db.commit()
		self.assertEqual(self.sandbox.count(OAUTH), before + 1)
		# The record holds it encrypted, hidden; Redis holds it encrypted too.
		stored = frappe.db.get_value(
			"Mpesa Settings", SETTINGS, ["access_token", "token_expires_at"], as_dict=True
		)
		self.assertNotEqual(stored.access_token, token)
		self.assertGreater(stored.token_expires_at, time.time() + 3000)
		raw = frappe.cache.get(settings_store.TokenStore(SETTINGS)._key("token"))
		self.assertNotIn(token.encode(), raw)
		# A new process (here: a new client) reads Redis, then the record when Redis lost it.
		settings_store._clients.clear()
		self.assertEqual(settings_store.get_client(self.settings).access_token(), token)
		settings_store.TokenStore(SETTINGS).forget()
		settings_store._clients.clear()
		self.assertEqual(settings_store.get_client(self.settings).access_token(), token)
		self.assertEqual(self.sandbox.count(OAUTH), before + 1)

	def test_a_held_token_lock_is_waited_for_no_longer_than_the_call_has_left(self):
		"""Another process holds the token lock (and is slow): load waits the timeout the core
		gives it, not the lock's LOCK_SECONDS."""
		self.cold()
		store = settings_store.TokenStore(SETTINGS)
		lock = store._key("token-lock")
		frappe.cache.set(lock, "another-process", px=60_000)
		self.addCleanup(frappe.cache.delete, lock)
		started = time.monotonic()
		self.assertIsNone(store.load(timeout=0.5))
		self.assertLess(time.monotonic() - started, 1.5)
		self.assertIn(frappe.cache.get(lock), ("another-process", b"another-process"))  # not taken

	def test_many_processes_starting_cold_make_one_token_request(self):
		self.cold()
		before = self.sandbox.count(OAUTH)
		context = multiprocessing.get_context("spawn")
		barrier = context.Manager().Barrier(WORKERS)
		with context.Pool(WORKERS) as pool:
			tokens = pool.starmap(
				token_worker,
				[(frappe.local.site, frappe.local.sites_path, SETTINGS, barrier)] * WORKERS,
			)
		self.assertEqual(len(set(tokens)), 1, "every process got the same token")
		self.assertEqual(self.sandbox.count(OAUTH) - before, 1)
