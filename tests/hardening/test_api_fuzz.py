"""schemathesis against the OpenAPI schema of the running app, with each credential an outsider can
hold (an admin's and a viewer's token, an agent's credential, none): no 5xx and responses that match
the schema, NUL bytes allowed. Bounded (a few examples per operation) so it fits in CI; `make fuzz`
(tests/hardening/fuzz.py) is the long run: all phases and checks, 100 examples per operation."""

import os

import pytest
import schemathesis
from django.core.management import call_command
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis import checks

from common.choices import Role
from common.models import User
from fleet import services as fleet_services
from fleet.licensing import verify_license
from fleet.models import License
from tests.base import LicenseIssuer, api_key_for

pytestmark = pytest.mark.integration

# Operations left out of fuzzing, with the reason.
EXCLUDED = {
    "/api/agent/register": "throttled per address; fuzzed registrations would exhaust the limit",
}

raw_schema = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(raw_schema)
schema.config.generation.update(allow_x00=True)
# No 5xx, documented statuses, content types and headers, bodies that match the schema. (Whether every
# schema-valid body is accepted is business validation — e.g. unknown ids — not schema.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "8"))
# The others mostly meet 401/403 at the door: fewer examples find what there is to find.
PERSONAS = {"admin": MAX_EXAMPLES, "viewer": 3, "agent": 3, "anonymous": 2}


@pytest.fixture(scope="module")
def credentials(django_db_setup, django_db_blocker):
    """One set of personas and objects for the whole module, flushed at its end: the fuzzed requests
    may leave whatever they create, as on a real panel, and no flush runs between the ~300 cases."""
    issuer = LicenseIssuer()
    with override_settings(LICENSE_PUBLIC_KEY=issuer.public_key), django_db_blocker.unblock():
        text = issuer.issue("enterprise")
        info = verify_license(text, issuer.public_key)
        License.objects.create(text=text, plan="enterprise", customer=info.customer, expires_at=info.expires_at)
        admin = User.objects.create_user(username="fuzz-admin", password="x", role=Role.ADMIN)
        viewer = User.objects.create_user(username="fuzz-viewer", password="x", role=Role.VIEWER)
        _token, plaintext = fleet_services.registration_token_create(actor=None, name="fuzz")
        instance, agent = fleet_services.agent_register(
            token=plaintext, name="fuzz-01", address="127.0.0.1:9", remote_addr="127.0.0.1"
        )
        state = {"os_version": "24.04", "apps": [{"name": "nginx", "version": "1.24.0", "running": True}]}
        fleet_services.heartbeat_record(instance=instance, state=state)
        yield {
            "admin": f"Bearer {api_key_for(admin)}",
            "viewer": f"Bearer {api_key_for(viewer)}",
            "agent": f"Agent {agent}",
            "anonymous": None,
        }
        call_command("flush", interactive=False, verbosity=0)


def _run(case, live_server, authorization):
    if case.path in EXCLUDED:
        pytest.skip(EXCLUDED[case.path])
    headers = {"Authorization": authorization} if authorization else {}
    case.call_and_validate(base_url=live_server.url, headers=headers, checks=CHECKS)


def _fuzz(persona):
    @schema.parametrize()
    @settings(max_examples=PERSONAS[persona], deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def test(case, live_server, credentials):
        _run(case, live_server, credentials[persona])

    return test


test_the_api_never_answers_5xx_and_matches_its_schema_as_admin = _fuzz("admin")
test_the_api_never_answers_5xx_and_matches_its_schema_as_viewer = _fuzz("viewer")
test_the_api_never_answers_5xx_and_matches_its_schema_as_an_agent = _fuzz("agent")
test_the_api_never_answers_5xx_and_matches_its_schema_anonymously = _fuzz("anonymous")
