"""HTTPS plumbing shared by the Daraja simulator and the callback receiver.

Certificate paths, the server TLS context, the record of a received request, and a quiet threaded
HTTP/1.1 server that a test can start and stop. Each TCP connection gets a serial number, recorded with
every request that arrives on it, so tests can tell reused connections from new ones.
"""

import contextlib
import itertools
import json
import logging
import os
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

CERTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")
CA_FILE = os.path.join(CERTS_DIR, "ca.pem")
SERVER_CERT = os.path.join(CERTS_DIR, "server.pem")
SERVER_KEY = os.path.join(CERTS_DIR, "server.key")
UNTRUSTED_CA_FILE = os.path.join(CERTS_DIR, "untrusted_ca.pem")
MPESA_TEST_CERT_PEM = os.path.join(CERTS_DIR, "mpesa_test_cert.pem")
MPESA_TEST_CERT_DER = os.path.join(CERTS_DIR, "mpesa_test_cert.cer")
MPESA_TEST_KEY = os.path.join(CERTS_DIR, "mpesa_test_key.pem")

# Bytes per chunk of a chunked response.
CHUNK_BYTES = 64 * 1024

logger = logging.getLogger("frappe_mpesa.sandbox")


def server_context():
	"""TLS context that serves the localhost test certificate, TLS 1.2 or newer."""
	context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	context.minimum_version = ssl.TLSVersion.TLSv1_2
	context.load_cert_chain(SERVER_CERT, SERVER_KEY)
	return context


@dataclass(frozen=True)
class RecordedRequest:
	"""One received request; ``query`` maps names to last values, ``json`` is the parsed body or None.

	``connection`` is the serial number of the TCP connection it came on, unique per server.
	"""

	method: str
	path: str
	query: dict
	headers: dict
	body: bytes
	json: object
	time: float
	connection: int = 0

	def header(self, name):
		"""The value of header ``name``, matched case-insensitively, or None."""
		name = name.lower()
		return next((value for key, value in self.headers.items() if key.lower() == name), None)


class Handler(BaseHTTPRequestHandler):
	"""Base handler: HTTP/1.1 keep-alive, bodies read by Content-Length, log lines to the logger only."""

	protocol_version = "HTTP/1.1"
	# Headers and body go out in two writes: without TCP_NODELAY, Nagle and delayed ACKs add 40 ms to each.
	disable_nagle_algorithm = True
	# Idle keep-alive connections are dropped after this many seconds, as real gateways do.
	timeout = 30

	def setup(self):
		"""Number the connection before serving it."""
		super().setup()
		self.connection_id = next(self.server.connection_ids)

	def log_message(self, format, *args):
		"""Send http.server's access and error lines to the debug log instead of stderr."""
		logger.debug("%s %s", self.address_string(), format % args)

	def receive(self):
		"""Read the body by its Content-Length, so the connection stays usable, and return the request."""
		length = int(self.headers.get("Content-Length") or 0)
		body = self.rfile.read(length) if length > 0 else b""
		try:
			parsed = json.loads(body) if body else None
		except (ValueError, RecursionError):  # a hostile body (e.g. nested 30,000 deep) is just not JSON
			parsed = None
		url = urlsplit(self.path)
		return RecordedRequest(
			method=self.command,
			path=url.path,
			query=dict(parse_qsl(url.query, keep_blank_values=True)),
			headers=dict(self.headers.items()),
			body=body,
			json=parsed,
			time=time.time(),
			connection=self.connection_id,
		)

	def reply(self, status, body, chunked=False):
		"""Send a response, a dict or list body as JSON: with Content-Length, or chunked without it."""
		data = body if isinstance(body, bytes) else json.dumps(body).encode()
		self.send_response(status)
		self.send_header("Content-Type", "application/json")
		if chunked:
			self.send_header("Transfer-Encoding", "chunked")
		else:
			self.send_header("Content-Length", str(len(data)))
		self.end_headers()
		if chunked:
			self.write_chunks(data)
		else:
			self.wfile.write(data)

	def write_chunks(self, data):
		"""Stream data in chunked transfer coding, so its size is only known once it all arrived."""
		for start in range(0, len(data), CHUNK_BYTES):
			piece = data[start : start + CHUNK_BYTES]
			self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
		self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
	"""ThreadingHTTPServer over TLS that knows its open connections, so stopping really disconnects."""

	daemon_threads = True

	def __init__(self, address, handler_class, service):
		self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
		self.service = service
		self._connections = set()
		self._connections_lock = threading.Lock()
		# next() on a count is atomic under the GIL, so handler threads share it without a lock.
		self.connection_ids = itertools.count(1)
		super().__init__(address, handler_class)
		# The handshake runs in each connection's thread: a slow or failing client never blocks accept().
		self.socket = server_context().wrap_socket(
			self.socket, server_side=True, do_handshake_on_connect=False
		)

	def server_bind(self):
		"""Bind without HTTPServer's reverse DNS lookup of the address, which can take seconds."""
		socketserver.TCPServer.server_bind(self)
		self.server_name, self.server_port = self.server_address[:2]

	def process_request_thread(self, request, client_address):
		"""Serve one connection, tracked while it is open."""
		with self._connections_lock:
			self._connections.add(request)
		try:
			super().process_request_thread(request, client_address)
		finally:
			with self._connections_lock:
				self._connections.discard(request)

	def close_connections(self):
		"""Disconnect every open connection, including idle keep-alive ones."""
		with self._connections_lock:
			connections = list(self._connections)
		for connection in connections:
			# The plain socket's shutdown: the serving thread sees EOF and ends, its TLS state untouched.
			with contextlib.suppress(OSError):
				socket.socket.shutdown(connection, socket.SHUT_RDWR)

	def handle_error(self, request, client_address):
		"""Log a failed connection (client gone, handshake refused) at debug level, not on stderr."""
		logger.debug("connection from %s failed", client_address, exc_info=True)


class HttpsService:
	"""A threaded HTTPS server in a daemon thread: ``start()``, ``url``, ``stop()``, or a ``with`` block."""

	handler_class = Handler

	def __init__(self, host="127.0.0.1", port=0):
		self.host = host
		self.port = port
		self._server = None
		self._thread = None

	@property
	def url(self):
		"""Base URL without a trailing slash; the real port once started."""
		host = f"[{self.host}]" if ":" in self.host else self.host
		return f"https://{host}:{self.port}"

	def start(self):
		"""Listen and serve in a daemon thread; returns self."""
		if self._server is not None:
			raise RuntimeError(f"{type(self).__name__} is already running at {self.url}")
		self._server = _Server((self.host, self.port), self.handler_class, self)
		self.port = self._server.server_address[1]
		# A short poll interval keeps stop() fast.
		self._thread = threading.Thread(
			target=self._server.serve_forever,
			kwargs={"poll_interval": 0.05},
			name=f"{type(self).__name__}:{self.port}",
			daemon=True,
		)
		self._thread.start()
		return self

	def stop(self):
		"""Stop listening and close open connections; does nothing if not running."""
		server, self._server = self._server, None
		if server is None:
			return
		server.shutdown()
		server.server_close()
		server.close_connections()
		self._thread.join()

	def __enter__(self):
		"""Start on entering a ``with`` block, unless already running."""
		return self if self._server is not None else self.start()

	def __exit__(self, *exc_info):
		"""Stop on leaving it."""
		self.stop()
