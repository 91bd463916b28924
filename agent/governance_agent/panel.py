"""Talking to the panel's agent API (`/api/agent/…`) over verified TLS.

The panel's certificate is verified against `panel.ca_bundle` (or the system's CA store), or
matched against the pinned SHA-256 fingerprint `panel.fingerprint` (then the fingerprint is the
identity, and a self-signed certificate is fine). Plain http:// is refused unless the agent runs
with --insecure-dev (the configuration check refuses it first; this is the second lock).
"""

from __future__ import annotations

import json
import os

import requests
from requests.adapters import HTTPAdapter

from . import __version__

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
TIMEOUT = (5, 30)


class PanelError(Exception):
    """A request the panel did not accept. `retry` says whether trying again later can help."""

    def __init__(self, message: str, *, status: int | None = None, retry: bool = True, retry_after: float = 0):
        super().__init__(message)
        self.status, self.retry, self.retry_after = status, retry, retry_after


class Unreachable(PanelError):
    """No answer (connection, TLS, timeout) or a server error: the panel is down, try again later."""


class PinnedAdapter(HTTPAdapter):
    """Accept exactly the certificate whose DER has this SHA-256 (urllib3's assert_fingerprint)."""

    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


class Panel:
    def __init__(self, config, *, insecure_dev: bool = False, credential: str | None = None):
        self.base = config.panel_url.rstrip("/")
        self.credential = credential
        if self.base.startswith("http://") and not insecure_dev:
            raise PanelError("Refusing plain http:// to the panel: use https:// (or --insecure-dev).", retry=False)
        session = requests.Session()
        session.headers["User-Agent"] = f"governance-agent/{__version__}"
        if config.fingerprint:
            self.verify = False  # the pinned fingerprint replaces CA verification, not removes it
            session.mount("https://", PinnedAdapter(config.fingerprint))
        else:
            self.verify = config.ca_bundle or (SYSTEM_CA if os.path.isfile(SYSTEM_CA) else True)
            session.mount("https://", HTTPAdapter(max_retries=0))
        self.session = session

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, *, body: bytes | None = None, auth: bool = True) -> dict:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Agent {self.credential}"
        url = f"{self.base}/api/agent/{path}"
        try:
            # `verify` on every request: on the session, REQUESTS_CA_BUNDLE from the environment would win.
            response = self.session.request(
                method, url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, verify=self.verify
            )
        except requests.exceptions.SSLError as exc:
            raise Unreachable(f"TLS verification of {self.base} failed: {_short(exc)}")
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {self.base}: {_short(exc)}")
        return _answer(response)

    def register(self, *, token: str, name: str, hostname: str, address: str, os_version: str) -> dict:
        body = {"token": token, "name": name, "hostname": hostname, "address": address, "os_version": os_version}
        return self._request("POST", "register", body=json.dumps(body).encode(), auth=False)

    def heartbeat(self, body: bytes) -> dict:
        return self._request("POST", "heartbeat", body=body)

    def commands(self) -> list[dict]:
        return self._request("GET", "commands").get("commands", [])

    def report(self, run_id: int, result: dict) -> dict:
        return self._request("POST", f"commands/{int(run_id)}/result", body=json.dumps(result).encode())


def _answer(response: requests.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if 200 <= response.status_code < 300:
        return data if isinstance(data, dict) else {}
    message = data.get("message") if isinstance(data, dict) else None
    message = f"HTTP {response.status_code}: {message or response.text[:300] or response.reason}"
    if response.status_code >= 500 or response.status_code in (408, 502, 503, 504):
        raise Unreachable(message, status=response.status_code)
    if response.status_code == 429:
        try:
            wait = float(response.headers.get("Retry-After") or 30)
        except ValueError:
            wait = 30.0
        raise PanelError(message, status=429, retry_after=wait)
    if 300 <= response.status_code < 400:
        where = response.headers.get("Location", "")
        raise PanelError(f"HTTP {response.status_code}: the panel redirects to {where}; fix panel.url", retry=False)
    raise PanelError(message, status=response.status_code, retry=response.status_code != 400)


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in (
        "CERTIFICATE_VERIFY_FAILED",
        "Fingerprints did not match",
        "Connection refused",
        "Name or service not known",
        "timed out",
        "No route to host",
    ):
        if marker in text:
            index = text.find(marker)
            return text[index : index + 160].rstrip("')\"")
    return text[:300]
