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


# Where the site's own proxy may connect from when no mpesa_trusted_proxies is configured.
LOOPBACK = ("127.0.0.0/8", "::1/128")


def _in_networks(address, networks):
	try:
		ip = ipaddress.ip_address((address or "").strip())
	except ValueError:
		return False
	if ip.version == 6 and ip.ipv4_mapped:
		ip = ip.ipv4_mapped
	return any(ip in network for network in networks)


def transport_facts(peer, header=None, header_value=None, trusted_proxies=None):
	"""How a verified callback reached the app server, and what is wrong with that, if anything.

	``peer`` is the socket peer (REMOTE_ADDR); ``header`` the configured trusted header (None when
	none is) and ``header_value`` its value in the request (None if absent); ``trusted_proxies``
	the networks the site's own proxy connects from (a list or a text of them; loopback when
	empty). A dict: peer, header, header_present, via_proxy and warning (None when all is well).
	"""
	try:
		proxies = parse_allowlist(
			" ".join(trusted_proxies) if isinstance(trusted_proxies, list | tuple) else trusted_proxies
		)
	except ValueError:
		proxies = []
	proxies = proxies or parse_allowlist(" ".join(LOOPBACK))
	via_proxy = _in_networks(peer, proxies)
	present = header_value is not None and bool(header_value.strip())
	warning = None
	if header and not via_proxy:
		warning = (
			f"A callback reached the app server straight from {peer or 'an unknown address'}, not through "
			f"the site's proxy, while its {header} header is trusted: anyone who can reach the app "
			f"server's port chooses that header. Make the app server listen on 127.0.0.1 only, behind "
			f"the proxy (or list the proxy's address in the site config key mpesa_trusted_proxies)."
		)
	elif header and not present:
		warning = (
			f"A callback came through {peer} without a {header} header, so its address was unknown "
			f"(Enforce refuses it). Make the proxy set it: proxy_set_header {header} $remote_addr;"
		)
	elif not header and via_proxy:
		warning = (
			f"Callbacks come through a proxy at {peer}, but no trusted client address header is set, "
			f"so every callback seems to come from the proxy and the IP allowlist checks nothing. "
			f"Set the header the proxy writes (e.g. X-Forwarded-For)."
		)
	return {
		"peer": peer,
		"header": header,
		"header_present": present,
		"via_proxy": via_proxy,
		"warning": warning,
	}
