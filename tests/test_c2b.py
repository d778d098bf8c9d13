"""Customer to business: URL registration (v2, then v1), simulation, pull."""

from datetime import datetime, timedelta, timezone

import pytest
from conftest import OAUTH, callback_with

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import CA_FILE, Sandbox

V2 = "/mpesa/c2b/v2/registerurl"
V1 = "/mpesa/c2b/v1/registerurl"
SIMULATE = "/mpesa/c2b/v1/simulate"
NAIROBI = timezone(timedelta(hours=3))


@pytest.fixture
def urls(receiver):
	return {
		"confirmation_url": receiver.url + "/hooks/c2b/confirm",
		"validation_url": receiver.url + "/hooks/c2b/validate",
	}


def test_register_uses_v2(client, sandbox, urls):
	answer = client.c2b_register_urls(shortcode="600984", **urls)
	assert answer["ResponseCode"] == "0" and answer["api_version"] == "v2"
	sent = [r for r in sandbox.requests if r.path == V2][0].json
	assert sent == {"ShortCode": "600984", "ResponseType": "Completed", "ConfirmationURL": urls["confirmation_url"],
		"ValidationURL": urls["validation_url"]}
	assert sandbox.count(V1) == 0


def own_sandbox(credentials, **options):
	key, secret = credentials
	sandbox = Sandbox(consumer_key=key, consumer_secret=secret, **options)
	return sandbox, daraja.Client(key, secret, base_url=sandbox.start().url, ca_file=CA_FILE)


def test_register_falls_back_to_v1_without_the_v2_product(credentials, urls):
	sandbox, client = own_sandbox(credentials, c2b_v2_product=False)
	with sandbox:
		answer = client.c2b_register_urls(shortcode="600984", response_type="Cancelled", **urls)
		assert answer["api_version"] == "v1"
		assert sandbox.count(V2) == 1 and sandbox.count(V1) == 1
		assert sandbox.count(OAUTH) == 1  # "No apiproduct match found" is not a token problem


def test_second_registration_in_production_style_is_an_api_error(credentials, urls):
	sandbox, client = own_sandbox(credentials, c2b_register_once=True)
	with sandbox:
		client.c2b_register_urls(shortcode="600984", **urls)
		with pytest.raises(daraja.APIError) as caught:
			client.c2b_register_urls(shortcode="600984", **urls)
		assert caught.value.error_code == "500.003.1001"


@pytest.mark.parametrize(
	"field, value",
	[
		("shortcode", "60098"[:4]),
		("response_type", "completed"),
		("confirmation_url", "https://example.com/mpesa/confirm"),
		("validation_url", "https://example.com/hooks?x=1&sql=1"),
	],
)
def test_register_rules(client, sandbox, urls, field, value):
	with pytest.raises(daraja.ValidationError) as caught:
		client.c2b_register_urls(**{"shortcode": "600984", **urls, field: value})
	assert caught.value.field == field
	assert sandbox.count() == 0


def test_simulated_payment_reaches_the_confirmation_url(client, receiver, urls):
	client.c2b_register_urls(shortcode="600984", **urls)
	answer = client.c2b_simulate(shortcode="600984", amount=75, phone="0708374149", bill_ref_number="ACC-9")
	assert answer["ResponseCode"] == "0"
	confirmation = callback_with(receiver, "BillRefNumber", "ACC-9").json
	assert confirmation["BusinessShortCode"] in ("600984", 600984)
	assert confirmation["TransAmount"] in ("75.00", 75, "75")
	assert len(confirmation["TransID"]) == 10


def test_simulate_rules(client, sandbox):
	with pytest.raises(daraja.ValidationError) as caught:
		client.c2b_simulate(shortcode="600984", amount=75, phone="0708374149")
	assert caught.value.field == "bill_ref_number"
	client.c2b_simulate(shortcode="600984", amount=75, phone="0708374149", command_id="CustomerBuyGoodsOnline")
	assert "BillRefNumber" not in [r for r in sandbox.requests if r.path == SIMULATE][0].json


def test_simulate_is_refused_in_production():
	client = daraja.Client("k", "s", environment="production")
	with pytest.raises(daraja.ValidationError) as caught:
		client.c2b_simulate(shortcode="600984", amount=1, phone="0708374149", bill_ref_number="A")
	assert caught.value.field == "environment"


def test_pull_register_and_query(client, receiver, urls):
	client.c2b_register_urls(shortcode="600984", **urls)
	client.c2b_simulate(shortcode="600984", amount=40, phone="0708374149", bill_ref_number="PULL-1")
	callback_with(receiver, "BillRefNumber", "PULL-1")
	answer = client.pull_register(shortcode="600984", nominated_number="0708374149",
		callback_url=receiver.url + "/hooks/pull")
	assert answer["ResponseStatus"] in ("1000", "1001")
	now = datetime.now(NAIROBI)
	listed = client.pull_query(shortcode="600984", start_date=now - timedelta(hours=1),
		end_date=(now + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S"))
	transactions = [t for page in listed["Response"] for t in page]
	assert any(t["billreference"] == "PULL-1" for t in transactions)


def test_pull_query_converts_aware_datetimes_to_nairobi_time(client, sandbox):
	start = datetime(2026, 11, 28, 6, 0, 0, tzinfo=timezone.utc)
	client.pull_query(shortcode="600984", start_date=start, end_date=start + timedelta(hours=2))
	body = [r for r in sandbox.requests if r.path == "/pulltransactions/v1/query"][0].json
	assert body == {"ShortCode": "600984", "StartDate": "2026-11-28 09:00:00", "EndDate": "2026-11-28 11:00:00",
		"OffSetValue": "0"}


@pytest.mark.parametrize(
	"start, end, field",
	[
		("2026-11-28 10:00", "2026-11-28 11:00:00", "start_date"),
		("2026-11-28 10:00:00", "28/11/2026 11:00:00", "end_date"),
		("2026-11-28 12:00:00", "2026-11-28 11:00:00", "end_date"),
		(12345, "2026-11-28 11:00:00", "start_date"),
	],
)
def test_pull_query_rules(client, sandbox, start, end, field):
	with pytest.raises(daraja.ValidationError) as caught:
		client.pull_query(shortcode="600984", start_date=start, end_date=end)
	assert caught.value.field == field
	assert sandbox.count() == 0


@pytest.mark.parametrize("number", ["254708374149", "0708374149", "+254 708 374 149", 254708374149, 708374149])
def test_pull_register_sends_the_nominated_number_as_daraja_documents_it(client, sandbox, receiver, number):
	client.pull_register(shortcode="600984", nominated_number=number, callback_url=receiver.url + "/hooks/pull")
	body = [r for r in sandbox.requests if r.path == "/pulltransactions/v1/register"][-1].json
	assert body == {"ShortCode": "600984", "RequestType": "Pull", "NominatedNumber": "0708374149",
		"CallBackURL": receiver.url + "/hooks/pull"}


@pytest.mark.parametrize("which", ["start_date", "end_date"])
def test_pull_query_refuses_naive_datetimes(client, sandbox, which):
	dates = {"start_date": datetime(2026, 11, 28, 9, 0, tzinfo=NAIROBI), "end_date": datetime(2026, 11, 28, 11, 0, tzinfo=NAIROBI)}
	dates[which] = dates[which].replace(tzinfo=None)
	with pytest.raises(daraja.ValidationError) as caught:
		client.pull_query(shortcode="600984", **dates)
	assert caught.value.field == which
	assert "aware" in str(caught.value)
	assert sandbox.count() == 0


def test_pull_query_takes_text_as_nairobi_time(client, sandbox):
	client.pull_query(shortcode="600984", start_date="2026-11-28 09:00:00", end_date="2026-11-28 11:00:00")
	body = [r for r in sandbox.requests if r.path == "/pulltransactions/v1/query"][0].json
	assert body["StartDate"] == "2026-11-28 09:00:00" and body["EndDate"] == "2026-11-28 11:00:00"


def test_pull_query_pages_with_offset_when_the_sandbox_pages(client, sandbox, receiver, urls):
	client.c2b_register_urls(shortcode="600984", **urls)
	for i in range(5):
		client.c2b_simulate(shortcode="600984", amount=10 + i, phone="0708374149", bill_ref_number=f"PAGE-{i}")
		callback_with(receiver, "BillRefNumber", f"PAGE-{i}")
	sandbox.pull_page_size = 2
	now = datetime.now(NAIROBI)
	window = {"start_date": now - timedelta(hours=1), "end_date": now + timedelta(minutes=5)}
	pages, offset = [], 0
	while True:
		page = [t for part in client.pull_query(shortcode="600984", offset=offset, **window)["Response"] for t in part]
		if not page:
			break
		pages.append([t["billreference"] for t in page])
		offset += len(page)
	assert pages == [["PAGE-0", "PAGE-1"], ["PAGE-2", "PAGE-3"], ["PAGE-4"]]
