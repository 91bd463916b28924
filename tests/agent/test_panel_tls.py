"""The agent talks to the panel over verified TLS only: a CA bundle, or a pinned certificate
fingerprint; plain http:// is refused unless --insecure-dev. Real TLS handshakes on loopback."""

import pytest
from governance_agent.config import ConfigError, from_dict
from governance_agent.panel import Panel, PanelError, Unreachable

from .tls import HTTPSServer, make_certs


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path / "tls")


@pytest.fixture
def https(certs):
    server = HTTPSServer(certs)
    yield server
    server.close()


def panel_for(url, **panel_options):
    return Panel(from_dict({"panel": {"url": url, "name": "t", **panel_options}}), credential="k.s")


def test_the_panel_certificate_is_verified_against_the_configured_ca_bundle(https, certs):
    assert panel_for(https.url, ca_bundle=str(certs.ca)).commands() == []


def test_a_certificate_no_trusted_ca_signed_is_refused(https):
    with pytest.raises(
        Unreachable, match="TLS verification of https://127.0.0.1:\\d+ failed: CERTIFICATE_VERIFY_FAILED"
    ):
        panel_for(https.url).commands()


def test_a_pinned_fingerprint_accepts_exactly_that_certificate(https, certs, tmp_path):
    assert panel_for(https.url, fingerprint=certs.fingerprint).commands() == []
    assert panel_for(https.url, fingerprint="sha256:" + certs.fingerprint.replace(":", "").lower()).commands() == []
    other = make_certs(tmp_path / "other")
    with pytest.raises(Unreachable, match="Fingerprints did not match"):
        panel_for(https.url, fingerprint=other.fingerprint).commands()


def test_neither_the_token_nor_the_credential_leaves_before_the_certificate_is_accepted(https, certs, tmp_path):
    """The pin (and the CA) are checked in the TLS handshake, before any byte of a request is sent."""
    other = make_certs(tmp_path / "other")
    for options in ({"fingerprint": other.fingerprint}, {"ca_bundle": str(other.ca)}, {}):
        panel = panel_for(https.url, **options)
        with pytest.raises(Unreachable, match="TLS verification of"):
            panel.register(token="reg_id_SECRET", name="web-01", hostname="web-01", address="", os_version="12")
        with pytest.raises(Unreachable, match="TLS verification of"):
            panel.commands()
    assert https.requests == []
    panel = panel_for(https.url, fingerprint=certs.fingerprint)
    panel.register(token="reg_id_SECRET", name="web-01", hostname="web-01", address="", os_version="12")
    panel.commands()
    (register, commands) = https.requests
    assert register[:3] == ("POST", "/api/agent/register", None) and '"token": "reg_id_SECRET"' in register[3]
    assert commands[:3] == ("GET", "/api/agent/commands", "Agent k.s")


def test_plain_http_is_refused_unless_insecure_dev():
    with pytest.raises(ConfigError) as refused:
        from_dict({"panel": {"url": "http://panel.example.com", "name": "t"}})
    assert refused.value.problems == [
        "panel.url: plain http:// is refused; use https:// (or --insecure-dev on a development machine)"
    ]
    config = from_dict({"panel": {"url": "http://panel.example.com", "name": "t"}}, insecure_dev=True)
    with pytest.raises(PanelError, match="Refusing plain http://"):
        Panel(config)  # the second lock: the client refuses too
    assert Panel(config, insecure_dev=True).base == "http://panel.example.com"


def test_a_ca_bundle_and_a_fingerprint_together_are_refused(certs):
    with pytest.raises(ConfigError, match="give either ca_bundle or fingerprint, not both"):
        from_dict(
            {"panel": {"url": "https://p", "name": "t", "ca_bundle": str(certs.ca), "fingerprint": certs.fingerprint}}
        )
