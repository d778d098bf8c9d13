"""HTTPS receiver for the callbacks the sandbox sends, for tests and the demo."""

import threading

from frappe_mpesa.sandbox.service import Handler, HttpsService

ACKNOWLEDGEMENT = {"ResultCode": 0, "ResultDesc": "Success"}


class _ReceiverHandler(Handler):
	"""Records each POST before acknowledging it, so a sender that got its 200 finds it recorded."""

	def do_POST(self):
		"""Record the callback and acknowledge it as a merchant's endpoint would."""
		self.server.service._record(self.receive())
		self.reply(200, ACKNOWLEDGEMENT)


class CallbackReceiver(HttpsService):
	"""Records every POST as a ``RecordedRequest`` (path, headers, body, json) and acknowledges it.

	Give the sandbox ``url`` plus a path as the CallBackURL, e.g. ``rx.url + "/hooks/stk"``.

	Callback URL paths must avoid the words Daraja bans (mpesa, safaricom, exe, exec, cmd, sql, query).
	"""

	handler_class = _ReceiverHandler

	def __init__(self, host="127.0.0.1", port=0):
		super().__init__(host, port)
		self._received = []
		self._arrived = threading.Condition()

	@property
	def received(self):
		"""Callbacks received so far, oldest first."""
		with self._arrived:
			return list(self._received)

	def wait(self, count=1, timeout=10.0, path=None):
		"""Block until at least ``count`` callbacks arrived (to ``path`` only, if given) and return them all
		(those to ``path``); TimeoutError otherwise."""

		def arrived():
			"""The callbacks that count, oldest first; called with the condition held."""
			return [request for request in self._received if path is None or request.path == path]

		with self._arrived:
			if not self._arrived.wait_for(lambda: len(arrived()) >= count, timeout):
				where = "" if path is None else f" to {path}"
				raise TimeoutError(f"{len(arrived())} of {count} callbacks{where} arrived within {timeout} s")
			return arrived()

	def _record(self, request):
		"""Keep a callback and wake the waiters."""
		with self._arrived:
			self._received.append(request)
			self._arrived.notify_all()
