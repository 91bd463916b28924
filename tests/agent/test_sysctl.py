"""Kernel parameters from `sysctl`: captured Debian 12 output, written Ubuntu 24.04 output, a live read."""

from governance_agent.sources import sysctl

from .conftest import fixture_text


def test_debian_12_values_are_numbers_and_a_range_is_one_spaced_text():
    values = {k: sysctl.typed(v) for k, v in sysctl.parse_values(fixture_text("debian12/sysctl.txt")).items()}
    assert values["net.ipv4.ip_forward"] == 0
    assert values["kernel.randomize_va_space"] == 2
    assert values["net.ipv4.ip_local_port_range"] == "32768 60999"


def test_keys_sysctl_cannot_read_are_problems_not_values():
    assert sysctl.parse_errors(fixture_text("debian12/sysctl.stderr")) == [
        "sysctl: cannot stat /proc/sys/no/such/key: No such file or directory"
    ]
    errors = sysctl.parse_errors(fixture_text("ubuntu2404/sysctl.stderr"))
    assert errors[0] == 'sysctl: permission denied on key "kernel.cad_pid"'
    assert sysctl.parse_values(fixture_text("ubuntu2404/sysctl.txt"))["net.ipv4.ip_forward"] == "1"


def test_a_sysctl_d_file_is_read_with_its_comments_and_slashes():
    text = "# c\n; c\nnet.ipv4.ip_forward = 1\n-net/ipv6/conf/all/forwarding=0\nbad line\n"
    assert sysctl.parse_conf(text) == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "0"}


def test_configured_keys_and_the_agents_own_file_are_read_from_the_running_kernel(scratch):
    (scratch.root / "etc/sysctl.d/90-governance.conf").write_text("kernel.ostype = Linux\n")
    values, problems = sysctl.collect(scratch.host(report={"sysctl": ["kernel.osrelease", "no.such.key"]}))
    assert values["sysctl.kernel.ostype"] == "Linux"
    assert "sysctl.kernel.osrelease" in values
    assert "sysctl.no.such.key" not in values and "no/such/key" in problems[0]
