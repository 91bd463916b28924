"""Issue #17: the evaluation reads only the apps the policies name (fleet.app_index) and gives exactly
the outcome of reading every app: the same violations, evidence, standings and release records, for
named apps, globs (a prefix, a leading wildcard, a bracket), update rules with "*", missing apps,
versions, stopped apps; and a state stored behind validation's back is still state_invalid."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fleet import services as fleet_services
from fleet.app_index import AppIndex, IndexDamaged, apps_text
from fleet.models import Instance
from governance import services
from governance.models import InstanceCompliance, ReleaseRecord, Violation
from tests.governance.conftest import make_policy
from tests.governance.test_state_invalid import poison

pytestmark = pytest.mark.django_db

POLICIES = [
    (
        "Need agent",
        "required_apps",
        {"apps": [{"name": "monitoring-agent", "min_version": "2.0"}, {"name": "log-collector", "running": True}]},
    ),
    ("No telnet", "blocked_apps", {"apps": [{"pattern": "telnet*"}, {"pattern": "outdated-db", "below_version": "2"}]}),
    ("No dev packages", "blocked_apps", {"apps": [{"pattern": "lib[xy]z?"}, {"pattern": "python3-dev"}]}),
    (
        "Updates",
        "update_rules",
        {
            "os_deadline_hours": 24,
            "apps": [{"name": "nginx", "deadline_hours": 1}, {"name": "*", "deadline_hours": 48}],
        },
    ),
    ("SSH", "baseline", {"settings": {"ssh.password_auth": False}}),
]


def ago(hours):
    return (timezone.now() - timedelta(hours=hours)).isoformat()


def package_list(n):
    return [{"name": f"pkg-{i:04d}", "version": f"1.{i}", "running": False} for i in range(n)]


STATES = [
    # every policy met
    {"apps": [("monitoring-agent", "2.1"), ("log-collector", "1.2")], "settings": {"ssh.password_auth": False}},
    # required app missing, one too old, one stopped; SSH on
    {"apps": [("log-collector", "1.2", False)], "settings": {"ssh.password_auth": True}},
    {"apps": [("monitoring-agent", "1.9"), ("log-collector", "1.2")]},
    # blocked: a prefix glob, a version range, a leading wildcard, a bracket
    {"apps": [("telnetd", "0.1"), ("telnet-client", "0.2"), ("outdated-db", "1.5"), ("monitoring-agent", "2.1")]},
    {
        "apps": [
            *[("outdated-db", "2.5"), ("python3-dev", "3.11"), ("libxz1", "5.4"), ("libyz9", "1"), ("libzz1", "1")],
            *[("manpages-doc", "6.03"), ("doc-base", "0.11"), ("lib-doc-x", "1"), ("boxly", "1"), ("box-y", "2")],
        ]
    },
    # updates: the OS, a named app, "*" over an app no rule names, one for an app not installed
    {
        "apps": [("nginx", "1.24"), ("openssl", "3.0.11"), ("curl", "7.88")],
        "updates": [
            {"kind": "os", "name": "os", "version": "24.04.3", "released_at": ago(30)},
            {"kind": "app", "name": "nginx", "version": "1.26", "released_at": ago(0.5)},
            {"kind": "app", "name": "openssl", "version": "3.0.13", "released_at": ago(72)},
            {"kind": "app", "name": "curl", "version": "7.80", "released_at": ago(100)},
            {"kind": "app", "name": "ghost", "version": "9", "released_at": ago(100)},
        ],
    },
]


def state(spec, extra=0):
    apps = [{"name": a[0], "version": a[1], "running": a[2] if len(a) > 2 else True} for a in spec["apps"]]
    return {
        "os_version": "24.04",
        "apps": apps + package_list(extra),
        "settings": spec.get("settings", {"ssh.password_auth": False}),
        "updates": spec.get("updates", []),
    }


def outcome():
    violations = sorted(
        Violation.objects.exclude(status="resolved").values_list(
            "instance__name", "policy__name", "rule_key", "rule", "evidence", "status"
        )
    )
    standings = sorted(
        InstanceCompliance.objects.values_list(
            "instance__name", "met", "applicable", "exempt", "score", "states", "invalid_reason"
        )
    )
    releases = sorted(
        (*r, r[-1] is None)
        for r in ReleaseRecord.objects.values_list("instance__name", "kind", "name", "version", "outcome")
    )
    return violations, standings, releases


# Globs that start with a wildcard: one with a literal part (found by it), one without (every app).
EXTRA_GLOBS = {"named and prefixed": [], "a leading wildcard": ["*-doc", "*x?y"], "no literal part": ["[b]ox?y"]}


@pytest.fixture(params=list(EXTRA_GLOBS))
def fleet(request, make_instance):
    """The states above, each stored by a heartbeat (so with an app index) and with 300 more packages;
    with globs that have a prefix, then also with globs that start with a wildcard."""
    for name, policy_type, rules in POLICIES:
        make_policy(name=name, policy_type=policy_type, rules=rules)
    if EXTRA_GLOBS[request.param]:
        rules = {"apps": [{"pattern": g} for g in EXTRA_GLOBS[request.param]]}
        make_policy(name="No docs", policy_type="blocked_apps", rules=rules)
    instances = []
    for spec in STATES:
        inst = make_instance()
        fleet_services.heartbeat_record(instance=inst, state=state(spec, extra=300))
        instances.append(inst)
    assert not Instance.objects.filter(apps_text__isnull=True).exists()
    return instances


def forget_outcome():
    Violation.objects.all().delete()
    InstanceCompliance.objects.all().delete()
    ReleaseRecord.objects.all().delete()


def store(inst, spec, *, index: bool):
    """`spec`'s state stored with its app index, or without (every app read from the apps JSON)."""
    clean = state(spec, extra=300)
    fields = {"apps": clean["apps"], "updates": clean["updates"], "settings": clean["settings"]}
    Instance.objects.filter(pk=inst.pk).update(**fields, apps_text=apps_text(clean["apps"]) if index else None)


# nginx upgraded to the release that was offered, which is no longer offered: its record is applied.
UPGRADED = {
    "apps": [("nginx", "1.26"), ("openssl", "3.0.11"), ("curl", "7.88")],
    "updates": [u for u in STATES[5]["updates"] if u["name"] != "nginx"],
}


def sweep_twice(fleet, *, index: bool):
    """A cold sweep, then nginx upgraded on one server and a second sweep: → both outcomes."""
    for inst, spec in zip(fleet, STATES, strict=True):
        store(inst, spec, index=index)
    forget_outcome()
    services.evaluate_fleet()
    first = outcome()
    store(fleet[5], UPGRADED, index=index)
    services.evaluate_fleet()
    return first, outcome()


def test_the_narrowed_sweep_gives_exactly_the_outcome_of_reading_every_app(fleet):
    narrowed = sweep_twice(fleet, index=True)
    full_first, full = sweep_twice(fleet, index=False)
    assert narrowed == (full_first, full)
    assert (fleet[5].name, "app", "nginx", "1.26", "applied", False) in full[2]

    violations, standings, releases = full_first

    violations, standings, releases = full
    keys = {(v[0], v[2]) for v in violations}
    names = [i.name for i in fleet]
    assert {
        (names[1], "app:monitoring-agent"),
        (names[1], "app:log-collector"),
        (names[2], "app:monitoring-agent"),
        (names[3], "blocked:telnet*"),
        (names[3], "blocked:outdated-db"),
        (names[4], "blocked:python3-dev"),
        (names[4], "blocked:lib[xy]z?"),
        (names[5], "update:os"),
        (names[5], "update:app:openssl"),
    } <= keys
    assert (names[5], "update:app:nginx") not in keys and (names[4], "blocked:outdated-db") not in keys
    evidence = {(v[0], v[2]): v[4] for v in violations}
    assert evidence[(names[3], "blocked:telnet*")].startswith("telnet-client 0.2, telnetd 0.1 installed")
    assert evidence[(names[4], "blocked:lib[xy]z?")].startswith("libxz1 5.4, libyz9 1 installed")
    assert {r[2] for r in releases if r[0] == names[5]} == {"os", "nginx", "openssl"}  # curl runs newer; ghost absent
    assert all(s[6] == "" for s in standings)


def test_a_heartbeat_evaluation_reads_the_index_and_agrees_with_the_full_read(fleet):
    inst = fleet[3]
    fleet_services.heartbeat_record(instance=inst, state=state(STATES[1], extra=300))  # a changed heartbeat
    assert Instance.objects.get(pk=inst.pk).apps_text is not None
    services.evaluate_instance(instance_id=inst.pk)
    narrowed = outcome()
    Instance.objects.filter(pk=inst.pk).update(apps_text=None)
    forget_outcome()
    services.evaluate_fleet()
    services.evaluate_instance(instance_id=inst.pk)
    assert outcome() == narrowed
    rule_keys = set(Violation.objects.filter(instance=inst, status="open").values_list("rule_key", flat=True))
    assert rule_keys == {"app:monitoring-agent", "app:log-collector", "setting:ssh.password_auth"}


def test_apps_rewritten_behind_the_heartbeat_drop_the_index_and_are_checked_in_full(fleet):
    good, bad, saved = fleet[0], fleet[1], fleet[2]
    poison(bad, "apps", '[["nginx", "1.0"]]')  # a raw UPDATE of apps alone
    saved.hostname = "renamed"
    saved.save()  # every column rewritten, apps unchanged: the index stays
    assert Instance.objects.get(pk=bad.pk).apps_text is None
    assert Instance.objects.get(pk=saved.pk).apps_text is not None

    result = services.evaluate_fleet()

    assert result["invalid"] == 1
    assert "apps is not a list of objects" in InstanceCompliance.objects.get(instance=bad).invalid_reason
    assert InstanceCompliance.objects.get(instance=good).score == 100.0


def test_a_damaged_index_makes_that_state_invalid_and_nobody_else(fleet):
    good, damaged = fleet[0], fleet[1]
    # Only apps_text writes the index; were a line the evaluation looks at ever damaged, it says so.
    Instance.objects.filter(pk=damaged.pk).update(apps_text="\nlog-collector\t1\t1\nmonitoring-agent\t2.1\n")

    assert services.evaluate_fleet()["invalid"] == 1
    assert services.evaluate_instance(instance_id=damaged.pk)["invalid"] == 1
    assert "apps index" in InstanceCompliance.objects.get(instance=damaged).invalid_reason
    assert InstanceCompliance.objects.get(instance=good).score == 100.0


def test_the_trigger_is_installed_on_this_database():
    inst = Instance.objects.create(name="raw", apps=[], apps_text=apps_text([]))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE fleet_instance SET apps = apps WHERE id = %s", [inst.pk])  # the same apps
    assert Instance.objects.get(pk=inst.pk).apps_text == "\n"
    Instance.objects.filter(pk=inst.pk).update(apps=[{"name": "x", "version": "1", "running": True}])
    assert Instance.objects.get(pk=inst.pk).apps_text is None


def test_select_finds_names_and_what_globs_may_match():
    apps = [
        {"name": "libxz1", "version": "5.4", "running": True},
        {"name": "nginx", "version": "1:1.24-2", "running": False},
        {"name": "nginx-common", "version": "1.24", "running": True},
        {"name": "python3-dev", "version": "3.11", "running": True},
    ]
    index = AppIndex(apps_text(apps))

    def names(*args):
        return sorted(a["name"] for a in index.select(*args))

    assert index.select({"nginx", "absent"}) == [apps[1]]
    assert names(set(), ("nginx*", "lib?z*")) == ["libxz1", "nginx", "nginx-common"]
    assert names(set(), ("*-dev",)) == ["python3-dev"]
    assert names(set(), ("*1",)) == ["libxz1"]  # "1" in a name; python3-dev has it only in its version
    assert names(set(), ("*.24",)) == []  # only versions hold ".24"
    assert names(set(), ("[n]*",)) == names(set(), ("*",)) == [a["name"] for a in apps]
    assert index.select(set(), ("zz*",)) == []
    with pytest.raises(IndexDamaged):
        AppIndex("nginx\t1\t1\n").select({"nginx"})
    with pytest.raises(IndexDamaged):
        AppIndex("\nnginx\t1\n").select({"nginx"})
    # A version validation lets end in a newline cannot be a line: no index, the apps JSON is read.
    assert apps_text([{"name": "a", "version": "1.0\n", "running": True}]) is None


def test_select_agrees_with_reading_every_app_on_random_indexes():
    """The binary search over the text's offsets (fleet.app_index._window) against a plain scan of
    every app: names that are prefixes of one another, spaces, punctuation and non-ASCII characters
    that sort around the tab, indexes large enough to be halved many times, absent names at either end."""
    from fnmatch import fnmatchcase
    from random import Random

    rng = Random(17)
    alphabet = "ab-.+ 1é~Z"
    for size in (0, 1, 2, 5, 40, 400, 3000):
        names = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(size)}
        apps = [{"name": n, "version": f"1.{i}", "running": i % 2 == 0} for i, n in enumerate(sorted(names))]
        index = AppIndex(apps_text(apps))
        for _ in range(30):
            asked = set(rng.sample(sorted(names), min(len(names), rng.randint(0, 8))))
            asked |= {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(3)}
            asked |= {"\x20", "~~~~~~~", "a" * 7}
            globs = tuple(
                rng.choice([f"{p}*", f"*{p}", f"{p}?", f"[ab]{p}*", "*"])
                for p in ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))) for _ in range(2))
            )
            named = index.select(asked)
            assert sorted(a["name"] for a in named) == sorted(names & asked)
            assert all(a in apps for a in named)
            selected = index.select(asked, globs)
            wanted = {a["name"] for a in apps if a["name"] in asked or any(fnmatchcase(a["name"], g) for g in globs)}
            got = {a["name"] for a in selected}
            assert wanted <= got <= names
            assert all(a in apps for a in selected)
