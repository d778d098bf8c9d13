"""Payment link tokens: signed, expiring, naming one document; splitting amounts above the limit."""

import pytest

from frappe_mpesa.links import LinkError, sign, split_amount, verify

SECRET = b"test-link-secret-0123456789abcdef-TEST-ONLY"


def test_a_token_names_its_document_until_it_expires():
	token = sign(SECRET, "Sales Invoice", "ACC-SINV-2026-00001", expires=1_000, nonce="n1")
	assert verify(SECRET, token, now=999) == ("Sales Invoice", "ACC-SINV-2026-00001", 1000, "n1")
	with pytest.raises(LinkError, match="expired"):
		verify(SECRET, token, now=1000)


def test_tampering_anywhere_is_refused():
	token = sign(SECRET, "Sales Invoice", "SI-1", expires=10**10)
	payload, signature = token.split(".")
	other = sign(SECRET, "Sales Invoice", "SI-2", expires=10**10).split(".")[0]

	def changed(text, i):
		# Not the last character: its low bits may be base64 padding, which decoding drops.
		return text[:i] + ("B" if text[i] == "A" else "A") + text[i + 1 :]

	tampered = [changed(payload, i) + "." + signature for i in (0, len(payload) // 2, len(payload) - 2)]
	tampered += [payload + "." + changed(signature, i) for i in (0, len(signature) // 2, len(signature) - 2)]
	for bad in [f"{other}.{signature}", *tampered]:
		with pytest.raises(LinkError, match="signature"):
			verify(SECRET, bad, now=0)
	with pytest.raises(LinkError, match="signature"):
		verify(b"another-secret-0123456789abcdef-TEST", token, now=0)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", None, 12, "x" * 2000, "!!!.???"])
def test_malformed_tokens(token):
	with pytest.raises(LinkError):
		verify(SECRET, token, now=0)


def test_a_short_secret_is_refused():
	with pytest.raises(LinkError, match="secret"):
		sign(b"short", "Sales Invoice", "SI-1", expires=1)


def test_names_with_the_separator_are_refused():
	with pytest.raises(LinkError, match="name"):
		sign(SECRET, "Sales Invoice", "SI|1", expires=1)


@pytest.mark.parametrize(
	"amount, limit, parts",
	[(100, 150000, [100]), (150000, 150000, [150000]), (250001, 150000, [125001, 125000]),
		(300000, 150000, [150000, 150000]), (10, 3, [3, 3, 2, 2])],
)
def test_split_amount(amount, limit, parts):
	assert split_amount(amount, limit) == parts
	assert sum(parts) == amount and max(parts) <= limit
