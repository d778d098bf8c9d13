"""Which address a callback came from, and the IP allowlist's settings.

Plain Python (no Frappe import). Frappe's ``frappe.local.request_ip`` is the first
X-Forwarded-For entry, which the caller writes; the address that counts is the one the site's
own proxy saw, i.e. the entry that proxy appended (counted from the right).
"""

import ipaddress

# Safaricom's commonly published callback source addresses (not on the portal pages; see the
# project's Daraja notes). Admins can edit the list per settings record.
SAFARICOM_CALLBACK_IPS = (
	"196.201.214.200",
	"196.201.214.206",
	"196.201.214.207",
	"196.201.214.208",
	"196.201.213.114",
	"196.201.213.44",
	"196.201.212.127",
	"196.201.212.128",
	"196.201.212.129",
	"196.201.212.132",
	"196.201.212.136",
	"196.201.212.138",
	"196.201.212.69",
	"196.201.212.74",
)
DEFAULT_ALLOWLIST = "\n".join(SAFARICOM_CALLBACK_IPS)

ENFORCE, LOG_ONLY, OFF = "Enforce", "Log only", "Off"
ALLOWLIST_MODES = (ENFORCE, LOG_ONLY, OFF)


def client_address(remote_addr, header_value=None, hops=1):
	"""The client's address as the site's own proxy saw it.

	``header_value``: the configured trusted header (e.g. X-Forwarded-For or X-Real-IP) or None
	when no header is configured, in which case the socket peer (REMOTE_ADDR) is the client.
	The proxy appends (or overwrites with) the address it saw, so the ``hops``-th entry from the
	right is the one to trust. Too few entries, or a header expected but missing, gives None:
	unknown, so an allowlist refuses it.
	"""
	if header_value is None:
		return (remote_addr or "").strip() or None
	entries = [entry.strip() for entry in header_value.split(",") if entry.strip()]
	if hops < 1 or len(entries) < hops:
		return None
	return _strip_port(entries[-hops])


def _strip_port(entry):
	# Some proxies write "1.2.3.4:5678" or "[::1]:5678"; the allowlist compares addresses only.
	if entry.startswith("["):
		return entry[1 : entry.find("]")] if "]" in entry else entry
	if entry.count(":") == 1:
		return entry.split(":", 1)[0]
	return entry


def parse_allowlist(text):
	"""The networks in an allowlist text (commas, spaces or new lines); ValueError naming a bad entry."""
	entries = [entry for entry in (text or "").replace(",", " ").split() if entry]
	networks = []
	for entry in entries:
		try:
			networks.append(ipaddress.ip_network(entry, strict=False))
		except ValueError:
			raise ValueError(f"'{entry}' is not an IP address or network") from None
	return networks


def allowlist_for(mode, text):
	"""The allowlist to pass to ``daraja.verify_callback`` in ``mode`` (None: address not checked)."""
	if mode not in ALLOWLIST_MODES:
		raise ValueError(f"unknown allowlist mode {mode!r}")
	if mode == OFF:
		return None
	return " ".join(str(network) for network in parse_allowlist(text))
