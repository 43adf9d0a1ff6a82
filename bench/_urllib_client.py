"""The PanDA HTTP client as it was before issue 14 (urllib, a new connection and TLS handshake per call).

Kept only for ``bench/comm_updates.py --only client``, so that the old and the new client are measured
in the same process, on the same machine, against the same fake server. `UrllibClient` is
`hpcpilot.comm.http.HttpClient` with the old transport: ``send`` is the old code unchanged; the
configuration checks, credentials, CA handling and the retry loop (``call``) are shared.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import random
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from hpcpilot.comm.http import HttpClient, HttpReply, ssl_context
from hpcpilot.comm.panda_api import EncodedRequest
from hpcpilot.config.schema import PandaSettings
from hpcpilot.model.errors import CommunicatorError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are errors: a POST must not silently become a GET elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> None:
        return None


class UrllibClient(HttpClient):
    """The old urllib transport behind the current `HttpClient` interface."""

    def __init__(
        self,
        settings: PandaSettings,
        env: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, env, rng)
        environ = os.environ if env is None else env
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if urllib.parse.urlsplit(settings.url).scheme == "https":
            handlers.append(
                urllib.request.HTTPSHandler(context=ssl_context(settings.ca_path, self.credentials, environ))
            )
        self._opener = urllib.request.build_opener(*handlers)

    def send(self, request: EncodedRequest) -> HttpReply:
        """Make one attempt.

        Raises
        ------
        CommunicatorError
            On a connection error, a timeout, TLS trouble or a non-2xx status; the context names the
            path and the status.
        """
        path = request.target.split("?", 1)[0]
        headers = dict(request.headers)
        headers["Accept-Encoding"] = "gzip"
        headers["User-Agent"] = "hpcpilot"
        body = request.body
        if body is not None and self.settings.gzip and headers.get("Content-Type") == "application/json":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.value()}"
            if self.credentials.origin:
                headers["Origin"] = self.credentials.origin
        req = urllib.request.Request(
            self.base_url + request.target, data=body, headers=headers, method=request.method
        )
        context: dict[str, object] = {"call": request.call.value, "path": path}
        try:
            with self._opener.open(req, timeout=self.settings.timeout_s) as response:
                status = int(response.status)
                data = response.read()
                encoding = response.headers.get("Content-Encoding", "")
        except urllib.error.HTTPError as exc:
            exc.close()
            retryable = exc.code in RETRYABLE_STATUSES
            raise CommunicatorError(
                f"{request.call.value}: HTTP {exc.code} {exc.reason}",
                retryable=retryable,
                context={**context, "status": exc.code},
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise CommunicatorError(
                    f"{request.call.value}: the server's certificate is not trusted "
                    f"({reason.verify_message}); set panda.ca_path to its CA",
                    context=context,
                ) from None
            raise CommunicatorError(
                f"{request.call.value}: cannot reach {self.base_url}: {reason}",
                retryable=not isinstance(reason, ssl.SSLError),
                context=context,
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise CommunicatorError(
                f"{request.call.value}: the server's certificate is not trusted ({exc.verify_message})",
                context=context,
            ) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            raise CommunicatorError(
                f"{request.call.value}: {type(exc).__name__}: {exc}", retryable=True, context=context
            ) from None
        if encoding.lower() == "gzip":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise CommunicatorError(
                    f"{request.call.value}: reply is not valid gzip: {exc}", retryable=True, context=context
                ) from None
        log.debug("%s %s: HTTP %d, %d bytes", request.method, path, status, len(data))
        return HttpReply(status, data)
