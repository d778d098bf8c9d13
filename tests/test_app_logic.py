"""The Frappe app's logic that needs no database: status machines, callback URLs, redaction and
the client address. These modules must import without Frappe (this venv has none)."""

import subprocess
import sys

import pytest

from frappe_mpesa import daraja, privacy, remote, states, urls

# ---- plain modules stay plain ------------------------------------------------------


def test_plain_modules_do_not_import_frappe():
	code = (
		"import sys\n"
		"import frappe_mpesa.states, frappe_mpesa.urls, frappe_mpesa.privacy, frappe_mpesa.remote\n"
		"assert 'frappe' not in sys.modules, 'frappe was imported'\n"
	)
	subprocess.run([sys.executable, "-c", code], check=True)


# ---- status machines -----------------------------------------------------------------


@pytest.mark.parametrize(
	"code, status",
	[
		(0, "Success"),
		("0", "Success"),
		(1032, "Cancelled"),
		("1037", "Timeout"),
		(1019, "Timeout"),
		(1, "Failed"),
		(2001, "Failed"),
		("SFC_IC0003", "Failed"),
		(None, "Failed"),
	],
)
def test_stk_outcome(code, status):
	assert states.stk_outcome(code) == status


def test_stk_final_states_never_change():
	for final in states.STK_FINAL:
		for other in ("Queued", "Pending", "Unknown", *states.STK_FINAL):
			assert not states.can_move(states.STK, final, other)


def test_stk_moves_forward_only():
	assert states.can_move(states.STK, "Queued", "Pending")
	assert states.can_move(states.STK, "Pending", "Success")
	assert states.can_move(states.STK, "Unknown", "Cancelled")
	assert not states.can_move(states.STK, "Pending", "Queued")
	assert not states.can_move(states.STK, "Pending", "Unknown")


def test_initiator_machine():
	machine = states.INITIATOR
	assert states.can_move(machine, "Draft", "Queued")
	assert not states.can_move(machine, "Draft", "Sent")
	# A result may come before the synchronous answer was recorded.
	assert states.can_move(machine, "Queued", "Completed")
	assert states.can_move(machine, "Sent", "Unknown")
	assert states.can_move(machine, "Unknown", "Completed")
	for final in states.INITIATOR_FINAL:
		for other in ("Queued", "Sent", "Unknown", "Completed", "Failed"):
			assert not states.can_move(machine, final, other)
	# A late "Sent" after the result, or a timeout after it, changes nothing.
	assert not states.can_move(machine, "Completed", "Sent")
	assert not states.can_move(machine, "Completed", "Unknown")


def test_initiator_outcomes():
	assert states.initiator_outcome("result", True) == "Completed"
	assert states.initiator_outcome("result", False) == "Failed"
	assert states.initiator_outcome("timeout", False) == "Unknown"
	assert states.initiator_outcome("timeout", True) == "Unknown"


@pytest.mark.parametrize(
	"success, status, expected",
	[
		(True, "Completed", "Completed"),
		(True, " completed ", "Completed"),
		(True, "Declined", "Failed"),
		(True, "Expired", "Failed"),
		(True, "Pending", None),
		(False, "Completed", None),
		(True, None, None),
	],
)
def test_transaction_status_outcome(success, status, expected):
	assert states.transaction_status_outcome(success, status) == expected


def test_random_walks_never_leave_a_final_state():
	import random

	rng = random.Random(1)
	everything = sorted({*states.STK, *states.STK_FINAL, "Unknown"})
	for _ in range(2000):
		current = "Queued"
		for _ in range(10):
			new = rng.choice(everything)
			if states.can_move(states.STK, current, new):
				assert current not in states.STK_FINAL
				current = new


# ---- callback URLs -------------------------------------------------------------------


@pytest.mark.parametrize("word", urls.BANNED_WORDS)
def test_banned_words_in_any_case(word):
	assert urls.banned_word(f"https://x.co/{word.upper()}") == word or urls.banned_word(
		f"https://x.co/{word.upper()}"
	)


@pytest.mark.parametrize(
	"bad",
	[
		"http://shop.example.com",
		"ftp://shop.example.com",
		"https://",
		"shop.example.com",
		"https://mpesa.example.com",
		"https://shop.example.com/Safaricom",
		"https://texel.co.ke",
		"https://shop.example.com/?a=1",
		"https://user:pw@shop.example.com",
	],
)
def test_bad_base_urls(bad):
	with pytest.raises(ValueError):
		urls.check_base_url(bad)


def test_base_url_is_normalised():
	assert urls.check_base_url(" https://shop.example.com/ ") == "https://shop.example.com"
	assert urls.check_base_url("https://shop.example.com/erp") == "https://shop.example.com/erp"


def test_callback_urls_use_neutral_aliases():
	secret = urls.safe_secret(daraja.new_callback_secret)
	for kind, alias in urls.CALLBACK_ALIASES.items():
		url = urls.callback_url("https://shop.example.com", kind, "0123456789abcdef", secret)
		assert url.startswith(f"https://shop.example.com/api/method/{alias}?h=0123456789abcdef&s=")
		assert urls.banned_word(url) is None
	with pytest.raises(ValueError):
		urls.callback_url("https://shop.example.com", "b2c", "x", secret)


def test_aliases_match_hooks():
	import ast
	from pathlib import Path

	tree = ast.parse((Path(urls.__file__).parent / "hooks.py").read_text())
	hooks = {
		target.id: ast.literal_eval(node.value)
		for node in tree.body
		if isinstance(node, ast.Assign)
		for target in node.targets
		if isinstance(target, ast.Name)
	}
	overrides = hooks["override_whitelisted_methods"]
	for kind, alias in urls.CALLBACK_ALIASES.items():
		assert overrides[alias] == f"frappe_mpesa.callbacks.{kind}"
		assert urls.banned_word(alias) is None


def test_secrets_that_spell_banned_words_are_redrawn():
	draws = iter(["abcSQLdef", "xEXEy", "clean-secret"])
	assert urls.safe_secret(lambda: next(draws)) == "clean-secret"


def test_secret_url_is_accepted_by_the_core():
	# The C core refuses banned callback URLs before sending; ours pass its validation.
	client = daraja.Client("k", "s", base_url="https://127.0.0.1:9", timeout=1.0, connect_timeout=0.2)
	url = urls.callback_url(
		"https://shop.example.com", "stk", "0123456789abcdef", urls.safe_secret(daraja.new_callback_secret)
	)
	with pytest.raises(daraja.TransportError):
		client.stk_push(
			shortcode="174379",
			passkey="p",
			amount=1,
			phone="254708374149",
			callback_url=url,
			account_reference="A",
			description="D",
		)
	with pytest.raises(daraja.ValidationError):
		client.stk_push(
			shortcode="174379",
			passkey="p",
			amount=1,
			phone="254708374149",
			callback_url="https://shop.example.com/mpesa",
			account_reference="A",
			description="D",
		)


# ---- redaction -------------------------------------------------------------------------


@pytest.mark.parametrize(
	"value, masked",
	[
		("254708374149", "25470****149"),
		(254708374149, "25470****149"),
		("+254708374149", "+25470****149"),
		("254708374149 - John Doe", "25470****149 - John Doe"),
		("NLJ7RT61SV", "NLJ7RT61SV"),
		(
			"2b0a3e1f8bbd8b1e5c4cc7f4e6e1b0f7c1dc3a4ce7f2b2a9c0f5d1e6b7a8c9d0",
			"2b0a3e1f8bbd8b1e5c4cc7f4e6e1b0f7c1dc3a4ce7f2b2a9c0f5d1e6b7a8c9d0",
		),
		(None, None),
	],
)
def test_mask_phone(value, masked):
	assert privacy.mask_phone(value) == masked


def test_redact_secrets_phones_and_callback_urls():
	payload = {
		"Authorization": "Bearer abc",
		"SecurityCredential": "xyz==",
		"Password": "MTc0",
		"access_token": "tok",
		"PhoneNumber": 254708374149,
		"PartyA": "254708374149",
		"Amount": 10,
		"CallBackURL": "https://shop.example.com/api/method/daraja_stk?h=ab&s=SECRETVALUE",
		"Body": {
			"stkCallback": {
				"CallbackMetadata": {
					"Item": [
						{"Name": "PhoneNumber", "Value": 254708374149},
						{"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
					]
				}
			}
		},
		"Result": {
			"ResultParameters": {
				"ResultParameter": [{"Key": "ReceiverPartyPublicName", "Value": "254708374149 - John Doe"}]
			}
		},
	}
	text = repr(privacy.redact(payload))
	for secret in ("Bearer abc", "xyz==", "MTc0", "'tok'", "SECRETVALUE", "254708374149"):
		assert secret not in text
	assert "NLJ7RT61SV" in text and "John Doe" in text and "25470****149" in text
	assert privacy.redact(payload)["Amount"] == 10


def test_redact_leaves_input_alone():
	payload = {"Password": "x"}
	privacy.redact(payload)
	assert payload == {"Password": "x"}


# ---- client address ----------------------------------------------------------------


@pytest.mark.parametrize(
	"peer, header, hops, expected",
	[
		("10.0.0.5", None, 1, "10.0.0.5"),  # no header configured: the socket peer
		("127.0.0.1", "196.201.214.200", 1, "196.201.214.200"),  # nginx: X-Forwarded-For $remote_addr
		("127.0.0.1", "196.201.214.200, 203.0.113.9", 1, "203.0.113.9"),  # spoofed first entry ignored
		("127.0.0.1", "1.1.1.1, 196.201.214.200, 10.0.0.2", 2, "196.201.214.200"),  # CDN then nginx
		("127.0.0.1", "", 1, None),  # header expected, missing: unknown
		("127.0.0.1", "1.2.3.4", 2, None),  # fewer entries than hops: unknown
		("127.0.0.1", "196.201.214.200:4431", 1, "196.201.214.200"),
		("127.0.0.1", "[2001:db8::1]:443", 1, "2001:db8::1"),
		("127.0.0.1", "2001:db8::1", 1, "2001:db8::1"),
	],
)
def test_client_address(peer, header, hops, expected):
	assert remote.client_address(peer, header, hops) == expected


def test_allowlist_parsing():
	assert remote.allowlist_for(remote.OFF, "garbage") is None
	assert (
		remote.allowlist_for(remote.ENFORCE, "196.201.214.200, 10.0.0.0/8\n::1")
		== "196.201.214.200/32 10.0.0.0/8 ::1/128"
	)
	with pytest.raises(ValueError, match="not-an-ip"):
		remote.parse_allowlist("1.2.3.4 not-an-ip")
	with pytest.raises(ValueError):
		remote.allowlist_for("Sometimes", "")


def test_default_allowlist_works_with_the_core():
	secret = daraja.new_callback_secret()
	allowlist = remote.allowlist_for(remote.ENFORCE, remote.DEFAULT_ALLOWLIST)
	assert daraja.verify_callback(secret, secret, "196.201.214.200", allowlist)
	assert not daraja.verify_callback(secret, secret, "203.0.113.9", allowlist)
	assert not daraja.verify_callback(secret, secret, None, allowlist)
	# What the first X-Forwarded-For entry would have let through, the rightmost does not.
	spoofed = "196.201.214.200, 203.0.113.9"
	assert not daraja.verify_callback(secret, secret, remote.client_address("127.0.0.1", spoofed), allowlist)


# ---- bodies nothing has parsed -----------------------------------------------------------


@pytest.mark.parametrize(
	"text, limit, within",
	[
		("[]", 1, True),
		("[[]]", 1, False),
		('{"a": [1, {"b": 2}]}', 3, True),
		('{"a": [1, {"b": 2}]}', 2, False),
		('"[[[[[[" ', 1, True),  # brackets in strings don't count
		('["\\"[[[["]', 1, True),  # nor after an escaped quote
		("[" * 100_000, 32, False),
		("", 32, True),
	],
)
def test_nesting_within(text, limit, within):
	assert privacy.nesting_within(text, limit) is within


def test_loads_shallow_never_recurses_deep():
	assert privacy.loads_shallow(b'{"a": [1]}') == {"a": [1]}
	for body in (b"[" * 200_000 + b"]" * 200_000, b"{" * 50_000, b'{"a":', b"\xff\xfe"):
		with pytest.raises(ValueError):
			privacy.loads_shallow(body)


def test_redact_text_of_a_body_that_did_not_parse():
	text = (
		'{"Password": "hunter2", "SecurityCredential":"c3VwZXI=", "MSISDN": 254708374149, '
		'{"Key": "Passkey", "Value": "bfb279f9"}, "CallBackURL": "https://h/api/method/x?h=1&s=SeCrEt", '
		'"Amount": 10, "initiatorPassword": "cut-off'
	)
	shown = privacy.redact_text(text)
	for secret in ("hunter2", "c3VwZXI=", "bfb279f9", "SeCrEt", "cut-off", "254708374149"):
		assert secret not in shown
	assert '"Amount": 10' in shown and "25470****149" in shown
	assert privacy.redact_text('{"Password": ""}') == '{"Password": ""}'


def test_redact_text_cuts_after_redacting():
	text = '{"x": "' + "a" * 5000 + '", "Password": "hunter2"}'
	shown = privacy.redact_text(text, limit=100)
	assert len(shown) < 200 and "more characters not kept" in shown
	# A secret straddling the cut is redacted before it, so no part of it is kept.
	text = '{"x": "' + "a" * 90 + '", "Password": "hunter2hunter2"}'
	assert "hunter" not in privacy.redact_text(text, limit=110)


# ---- how a callback reached the app server -----------------------------------------------------


@pytest.mark.parametrize(
	"peer, header, value, trusted, warned, via",
	[
		("127.0.0.1", "X-Forwarded-For", "196.201.214.200", None, None, True),  # nginx on the host
		("::1", "X-Forwarded-For", "196.201.214.200", None, None, True),
		("::ffff:127.0.0.1", "X-Forwarded-For", "196.201.214.200", None, None, True),
		("203.0.113.9", "X-Forwarded-For", "127.0.0.1", None, "straight from 203.0.113.9", False),
		("172.18.0.5", "X-Forwarded-For", "196.201.214.200", "172.18.0.0/16", None, True),  # docker
		("172.18.0.5", "X-Forwarded-For", "196.201.214.200", ["172.18.0.0/16"], None, True),
		("172.18.0.5", "X-Forwarded-For", "196.201.214.200", "not-a-network", "straight from", False),
		("127.0.0.1", "X-Forwarded-For", None, None, "without a X-Forwarded-For header", True),
		("127.0.0.1", "X-Real-IP", "  ", None, "without a X-Real-IP header", True),
		("127.0.0.1", None, None, None, "no trusted client address header", True),
		("196.201.214.200", None, None, None, None, False),  # nothing in front, no header: fine
	],
)
def test_transport_facts(peer, header, value, trusted, warned, via):
	facts = remote.transport_facts(peer, header, value, trusted)
	assert facts["via_proxy"] is via
	if warned is None:
		assert facts["warning"] is None
	else:
		assert warned in facts["warning"]


def test_redact_key_value_pairs():
	parsed = {
		"parameters": [
			["CreditPartyName", "254708374149 - JOHN DOE"],
			["Password", "hunter2"],
			["Amount", 50],
		],
		"msisdn": ["254708374149", "254711111111"],
	}
	text = repr(privacy.redact(parsed))
	for secret in ("254708374149", "254711111111", "hunter2"):
		assert secret not in text
	assert privacy.redact(parsed)["parameters"][2] == ["Amount", 50]
	assert "25470****149 - JOHN DOE" in text


def test_hooks_name_each_hook_once_and_every_script_exists():
	"""A hook assigned twice in hooks.py silently drops the first; a script path that names no
	file breaks the form it was meant for."""
	import ast
	from pathlib import Path

	app = Path(urls.__file__).parent
	tree = ast.parse((app / "hooks.py").read_text())
	names = [
		target.id
		for node in tree.body
		if isinstance(node, ast.Assign)
		for target in node.targets
		if isinstance(target, ast.Name)
	]
	assert sorted(n for n in set(names) if names.count(n) > 1) == []
	hooks = {
		target.id: ast.literal_eval(node.value)
		for node in tree.body
		if isinstance(node, ast.Assign)
		for target in node.targets
		if isinstance(target, ast.Name)
	}
	scripts = [
		path
		for key in ("doctype_js", "doctype_list_js", "page_js")
		for value in hooks.get(key, {}).values()
		for path in ([value] if isinstance(value, str) else value)
	]
	assert scripts
	assert [path for path in scripts if not (app / path).is_file()] == []
