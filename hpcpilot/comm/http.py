"""The HTTPS client for the PanDA server: pooled keep-alive connections, TLS, credentials, gzip, retries.

Built on ``requests`` (a `requests.Session` with one `requests.adapters.HTTPAdapter`):

* **Connections are kept alive and reused.** The adapter pools `POOL_SIZE` connections to the server;
  the communicator's single network thread uses one of them for call after call, so a call costs one
  request/reply exchange, not a TCP connect plus a TLS handshake as with the former urllib client (one
  connection per call). A connection the server has closed is noticed before reuse and replaced.
* **TLS verification** is always on for ``https://`` URLs; no setting turns it off. The CA certificates
  come from ``panda.ca_path`` (a directory or a bundle file), else ``$X509_CERT_DIR`` when set, else the
  system's; they are loaded once into one `ssl.SSLContext` (with the X.509 proxy as client certificate)
  that every connection uses, and nothing else is trusted (not the ``certifi`` bundle ``requests``
  would otherwise add). A plain ``http://`` URL (tests, the server's port 25080) is allowed, with one
  warning, but not with a bearer token unless ``panda.allow_insecure_token`` says so (the token would
  travel in clear).
* **Credentials**: a bearer token (``panda.token_file``, else the file named by ``$PANDA_AUTH_TOKEN`` /
  ``$OIDC_AUTH_TOKEN``, looked up in ``$PANDA_AUTH_DIR`` / ``$OIDC_AUTH_DIR`` when not a path) sent as
  ``Authorization: Bearer`` with an ``Origin`` header (``panda.origin``, else ``$PANDA_AUTH_ORIGIN`` /
  ``$OIDC_AUTH_ORIGIN``); otherwise an X.509 proxy (``panda.proxy``, else ``$X509_USER_PROXY``) as client
  certificate. The token file is read again when it changes (tokens are refreshed). Neither the token
  nor any header is ever logged. A token or proxy file that group or others may read is used, with a
  warning that names it and its mode (it should be ``0600``).
* **Nothing implicit** (``Session.trust_env`` is off): no ``~/.netrc`` credentials, no
  ``$REQUESTS_CA_BUNDLE``/``$CURL_CA_BUNDLE``; cookies the server sets are refused (never sent back);
  redirects are not followed (a 3xx is an error: a POST must not silently become a GET elsewhere). An
  HTTP(S) proxy in ``$https_proxy``/``$http_proxy`` (``$no_proxy`` respected) is still used, as urllib
  did: it is read once, from the environment the client is given.
* **Bodies** with a JSON content type are gzipped (``Content-Encoding: gzip``) when ``panda.gzip``;
  gzipped replies are unpacked.
* **Retries**: `HttpClient.call` makes up to ``panda.retries`` attempts, pausing ``panda.backoff_s``,
  doubling up to ``panda.backoff_max_s``, with jitter. Connection errors, timeouts, HTTP 5xx/408/429 and
  replies its parser calls retryable are retried; anything else fails at once. This loop is the only
  retry policy: urllib3's own `urllib3.util.Retry` is set to ``total=0`` in the adapter. urllib3 cannot
  express the policy: it does not retry a POST (every v1 update) after the request was sent, does not
  know the replies a parser finds retryable, has no jittered ceiling, and cannot stop a pause when the
  communicator closes; retrying in both layers would multiply the attempts, and the outbox and the
  communicator's give-up clock (``panda.give_up_s``) count on one attempt per `HttpClient.send`.

Every failure is a `CommunicatorError` whose context names the URL path and, when there was one, the
HTTP status; ``retryable`` says whether trying again later can help.
"""

from __future__ import annotations

import gzip
import http.cookiejar
import logging
import os
import random
import ssl
import stat
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
import requests.adapters
from urllib3.util import Retry

from hpcpilot.comm.panda_api import EncodedRequest
from hpcpilot.config.schema import PandaSettings
from hpcpilot.model.errors import CommunicatorError, ConfigError, ErrorCode

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses after which the same request may succeed later.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: Connections kept open to the server: the network thread needs one; a second lets a call from
#: another thread (a final flush at close) go out without closing and reopening one.
POOL_SIZE = 2

#: Headers of every request (besides the request's own, and the credentials).
DEFAULT_HEADERS = (("User-Agent", "hpcpilot"), ("Accept-Encoding", "gzip"))

#: No retries inside urllib3 (see the module's description: `HttpClient.call` is the retry policy).
NO_RETRIES = Retry(total=0, connect=0, read=False, redirect=0, status=0, other=0, raise_on_status=False)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A reply with a 2xx status.

    Attributes
    ----------
    status
        The HTTP status.
    body
        The body, unpacked when it came gzipped.
    """

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the client proves who it is (file paths only: never the secrets themselves).

    Attributes
    ----------
    token_file
        A file holding a bearer token, or empty.
    origin
        The ``Origin`` header sent with the token.
    proxy
        An X.509 proxy file used as client certificate, or empty.
    """

    token_file: str = ""
    origin: str = ""
    proxy: str = ""


def find_credentials(settings: PandaSettings, env: Mapping[str, str]) -> Credentials:
    """Work out the credentials from the settings, falling back to the usual environment variables.

    Parameters
    ----------
    settings
        The ``panda`` settings.
    env
        The environment.

    Returns
    -------
    Credentials
        A token (with its origin) if one is configured, else a proxy if one is, else nothing.

    Raises
    ------
    ConfigError
        If a configured token or proxy file does not exist (the message names the setting or variable).
    """
    token = settings.token_file
    token_source = "panda.token_file"
    if not token:
        for var in ("PANDA_AUTH_TOKEN", "OIDC_AUTH_TOKEN"):
            if env.get(var):
                token, token_source = _token_path(env[var], env), f"${var}"
                break
    if token:
        if not Path(token).is_file():
            raise ConfigError(f"{token_source}: token file {token} does not exist")
        warn_if_shared(token, f"{token_source}: token file")
        origin = settings.origin or env.get("PANDA_AUTH_ORIGIN") or env.get("OIDC_AUTH_ORIGIN") or ""
        if not origin:
            log.warning("a token is configured but no Origin (panda.origin): the server may refuse it")
        return Credentials(token_file=token, origin=origin)
    proxy = settings.proxy or env.get("X509_USER_PROXY", "")
    source = "panda.proxy" if settings.proxy else "$X509_USER_PROXY"
    if proxy and not Path(proxy).is_file():
        raise ConfigError(f"{source}: X.509 proxy {proxy} does not exist", code=ErrorCode.NO_PROXY)
    if proxy:
        warn_if_shared(proxy, f"{source}: X.509 proxy")
    return Credentials(proxy=proxy)


def warn_if_shared(path: str, what: str) -> bool:
    """Warn when group or others have any access to a credential file (it should be ``0600``).

    The file is still used: the site may have its reasons (a shared service account), and refusing
    would stop the run where a warning does not. Pilot 3 refuses a proxy that is not ``0600``.

    Parameters
    ----------
    path
        The token or proxy file.
    what
        What it is and where it was configured, for the message (``panda.proxy: X.509 proxy``).

    Returns
    -------
    bool
        Whether a warning was logged.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return False  # a missing file is reported where it is read
    if not mode & 0o077:
        return False
    log.warning(
        "%s %s has mode %04o: group or others may read it; it should be 0600 (chmod 600 %s)",
        what,
        path,
        mode,
        path,
    )
    return True


def _token_path(name: str, env: Mapping[str, str]) -> str:
    """A token named by an environment variable: a path, or a file name in the token directory."""
    if os.sep in name or Path(name).is_file():
        return name
    for var in ("PANDA_AUTH_DIR", "OIDC_AUTH_DIR"):
        directory = env.get(var)
        if directory:
            candidate = Path(directory) / name
            if candidate.is_file():
                return str(candidate)
    return name


def ssl_context(ca_path: str, credentials: Credentials, env: Mapping[str, str]) -> ssl.SSLContext:
    """A client TLS context that verifies the server: CA from ``ca_path``, ``$X509_CERT_DIR`` or the system.

    Raises
    ------
    ConfigError
        If ``ca_path`` does not exist or a certificate cannot be loaded.
    """
    cafile: str | None = None
    capath: str | None = None
    if ca_path:
        path = Path(ca_path)
        if path.is_dir():
            capath = ca_path
        elif path.is_file():
            cafile = ca_path
        else:
            raise ConfigError(f"panda.ca_path: {ca_path} is neither a directory nor a file")
    elif env.get("X509_CERT_DIR") and Path(env["X509_CERT_DIR"]).is_dir():
        capath = env["X509_CERT_DIR"]
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
        if credentials.proxy and not credentials.token_file:
            context.load_cert_chain(credentials.proxy)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"panda: cannot set up TLS: {exc}") from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Token:
    """A bearer token read from a file, read again whenever the file changes."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self._value = ""

    def value(self) -> str:
        try:
            info = self._path.stat()
            stamp = (info.st_mtime, info.st_size)
            if stamp != self._stamp:
                if self._stamp is not None:  # refreshed: the new file may have other permissions
                    warn_if_shared(str(self._path), "refreshed token file")
                self._value = self._path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
        except OSError as exc:
            raise CommunicatorError(
                f"cannot read the token file: {exc.strerror}", context={"token_file": str(self._path)}
            ) from None
        return self._value


def env_proxies(url: str, env: Mapping[str, str]) -> dict[str, str]:
    """The HTTP(S) proxy for ``url`` named by the environment, as urllib found it.

    ``$<scheme>_proxy`` (lower case first, then upper case) unless ``$no_proxy``/``$NO_PROXY`` names the
    host: ``*``, the host itself, or a domain it is in (``.example.org`` or ``example.org``), each with an
    optional ``:port``.

    Parameters
    ----------
    url
        The server's URL.
    env
        The environment.

    Returns
    -------
    dict[str, str]
        ``{scheme: proxy URL}`` for `requests.Session.proxies`, or empty (direct connections).
    """
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme, (parts.hostname or "").lower()
    proxy = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY") or ""
    if not proxy:
        return {}
    port = parts.port or (443 if scheme == "https" else 80)
    for entry in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(","):
        name, _, entry_port = entry.strip().lower().partition(":")
        if entry_port and entry_port != str(port):
            continue
        domain = name.lstrip(".")
        if name == "*" or (domain and (host == domain or host.endswith("." + domain))):
            return {}
    return {scheme: proxy}


class _Adapter(requests.adapters.HTTPAdapter):
    """The pool of keep-alive connections, all using one TLS context and no retries of their own."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context  # set before the base class builds the pool manager
        super().__init__(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=NO_RETRIES)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(connections, maxsize, block, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Always verify, against our context's CA certificates only.

        The base class would add ``certifi``'s bundle to the context (``conn.ca_certs``): a server
        certificate from any public CA would then pass where ``panda.ca_path`` names one CA.
        """
        if url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None


def _session(context: ssl.SSLContext | None, proxies: Mapping[str, str]) -> requests.Session:
    """A session with our adapter and nothing implicit (see the module's description)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = True
    session.max_redirects = 0
    session.headers.clear()  # HttpClient.send prepares its requests whole: DEFAULT_HEADERS and its own
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.proxies.update(proxies)
    adapter = _Adapter(context)
    for prefix in ("https://", "http://"):
        session.mount(prefix, adapter)
    return session


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` among ``exc``, its arguments, reasons and causes."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return item
        todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None


class HttpClient:
    """Sends encoded requests to one server over pooled keep-alive connections.

    Parameters
    ----------
    settings
        The ``panda`` settings (URL, credentials, timeouts, retries).
    env
        The environment for the fall-back variables and the HTTP(S) proxy (default: ``os.environ``).
    rng
        Source of the jitter (tests pass a seeded one).

    Raises
    ------
    ConfigError
        If the URL is not ``http(s)://host...``, or credentials or CA certificates are unusable, or a
        bearer token would go over plain ``http://`` without ``panda.allow_insecure_token``.
    """

    def __init__(
        self,
        settings: PandaSettings,
        env: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.settings = settings
        parts = urllib.parse.urlsplit(settings.url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(f"panda.url: {settings.url!r} is not an http(s)://host[:port] URL")
        self.base_url = settings.url.rstrip("/")
        self._rng = rng or random.Random()
        self.credentials = find_credentials(settings, environ)
        self._token = _Token(self.credentials.token_file) if self.credentials.token_file else None
        context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            context = ssl_context(settings.ca_path, self.credentials, environ)
        elif self._token is not None and not settings.allow_insecure_token:
            raise ConfigError(
                f"panda.url {self.base_url} is plain http: the bearer token would be sent unencrypted; "
                "use https, or set panda.allow_insecure_token=true (for a test server only)"
            )
        else:
            clear = " (the bearer token too: panda.allow_insecure_token)" if self._token is not None else ""
            log.warning(
                "panda.url %s is plain http: nothing is encrypted or verified%s", self.base_url, clear
            )
        proxies = env_proxies(self.base_url, environ)
        if proxies:
            log.info("the PanDA server is reached through the proxy %s", _no_userinfo(proxies[parts.scheme]))
        self._session = _session(context, proxies)

    def close(self) -> None:
        """Close the pooled connections (a later call opens a new one)."""
        self._session.close()

    def call(
        self,
        request: EncodedRequest,
        parse: Callable[[HttpReply], T],
        *,
        stop: threading.Event | None = None,
    ) -> T:
        """Send a request and parse its reply, retrying what may succeed on another attempt.

        Parameters
        ----------
        request
            The request.
        parse
            Turns a reply into the result; a `CommunicatorError` it raises with ``retryable`` set is
            retried like a transport error.
        stop
            When set, pauses between attempts end at once and the last error is raised.

        Returns
        -------
        T
            What ``parse`` returned.

        Raises
        ------
        CommunicatorError
            The last attempt's error, when no attempt succeeded or the error cannot be helped by
            retrying.
        """
        attempts = max(1, self.settings.retries)
        for attempt in range(1, attempts + 1):
            try:
                return parse(self.send(request))
            except CommunicatorError as exc:
                if not exc.retryable or attempt == attempts or (stop is not None and stop.is_set()):
                    raise
                delay = self.backoff(attempt - 1)
                log.debug(
                    "%s failed (attempt %d of %d), again in %.1f s: %s",
                    request.call.value,
                    attempt,
                    attempts,
                    delay,
                    exc,
                )
                if stop is not None:
                    if stop.wait(delay):
                        raise
                else:
                    threading.Event().wait(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def backoff(self, failures: int) -> float:
        """The pause after ``failures + 1`` consecutive failures.

        ``backoff_s`` doubling with every failure up to ``backoff_max_s``; the pause is between half of
        that and all of it (jitter), so that many pilots do not come back at the same moment.
        """
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_s * 2.0 ** min(failures, 30))
        return float(ceiling * (0.5 + 0.5 * self._rng.random()))

    def send(self, request: EncodedRequest) -> HttpReply:
        """Make one attempt.

        Raises
        ------
        CommunicatorError
            On a connection error, a timeout, TLS trouble or a non-2xx status; the context names the
            path and the status.
        """
        path = request.target.split("?", 1)[0]
        headers = dict(DEFAULT_HEADERS)
        headers.update(request.headers)
        body = request.body
        if body is not None and self.settings.gzip and headers.get("Content-Type") == "application/json":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.value()}"
            if self.credentials.origin:
                headers["Origin"] = self.credentials.origin
        context: dict[str, object] = {"call": request.call.value, "path": path}
        # prepared here, whole, and sent through the session: Session.request would merge session-wide
        # headers, cookies and authentication that this session does not have (a sixth of a call's time)
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare(
                method=request.method, url=self.base_url + request.target, headers=headers, data=body
            )
            response = self._session.send(prepared, timeout=self.settings.timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            raise _transport_error(request.call.value, self.base_url, exc, context) from None
        status = response.status_code
        if not 200 <= status < 300:
            raise CommunicatorError(
                f"{request.call.value}: HTTP {status} {response.reason}",
                retryable=status in RETRYABLE_STATUSES,
                context={**context, "status": status},
            )
        data = response.content
        log.debug("%s %s: HTTP %d, %d bytes", request.method, path, status, len(data))
        return HttpReply(status, data)


def _transport_error(
    call: str, base_url: str, exc: requests.RequestException, context: dict[str, object]
) -> CommunicatorError:
    """A `CommunicatorError` for a request that got no reply (or an unreadable one)."""
    untrusted = _cause(exc, ssl.SSLCertVerificationError)
    if isinstance(untrusted, ssl.SSLCertVerificationError):
        return CommunicatorError(
            f"{call}: the server's certificate is not trusted ({untrusted.verify_message}); "
            "set panda.ca_path to its CA",
            context=context,
        )
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return CommunicatorError(f"{call}: reply is not valid gzip: {exc}", retryable=True, context=context)
    if isinstance(exc, requests.Timeout):
        return CommunicatorError(f"{call}: timed out: {exc}", retryable=True, context=context)
    tls = _cause(exc, ssl.SSLError)
    # a TLS handshake the server refuses (protocol, client certificate) fails again; a connection that
    # ends in the middle (EOF) is a connection error like any other
    lasting = tls is not None and not isinstance(tls, ssl.SSLEOFError | ssl.SSLZeroReturnError)
    return CommunicatorError(
        f"{call}: cannot reach {base_url}: {_root(exc)}", retryable=not lasting, context=context
    )


def _root(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, in words (without the URL repeated)."""
    reason: object = exc
    for _ in range(5):
        inner = getattr(reason, "reason", None) or (
            reason.args[0] if isinstance(reason, BaseException) and reason.args else None
        )
        if not isinstance(inner, BaseException):
            break
        reason = inner
    return f"{type(reason).__name__}: {reason}"


def _no_userinfo(url: str) -> str:
    """A proxy URL without a user name or password in it (for the log)."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
