"""hscale.settings: every knob's parsing, its usage errors, and the derived values."""

from __future__ import annotations

import math

import pytest

from hscale import paths, settings
from hscale.settings import (
    KNOBS,
    MIN_REPLICA_CPUS,
    RESERVED_CPUS,
    UsageError,
    default_replica_cpus,
    load,
)

# Ports well away from the defaults, so the port checks below are about these values only.
PORTS = {"PORT": "18080", "APP_PORT": "18101", "STORE_PORT": "16390"}


def load_ok(host_cpus: int = 8, **values: str) -> settings.Settings:
    return load({**PORTS, **values}, host_cpus=host_cpus)


def usage_error(host_cpus: int = 8, **values: str) -> str:
    with pytest.raises(UsageError) as info:
        load({**PORTS, **values}, host_cpus=host_cpus)
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# -- defaults ----------------------------------------------------------------------------


def default(name: str):
    """A knob's default as its own parser reads it (the table is the one source of truth)."""
    knob = next(k for k in KNOBS if k.name == name)
    return None if knob.default is None else knob.parse(knob.default)


def test_defaults_from_the_knob_table():
    s = load({}, host_cpus=9)
    assert s.sweep == tuple(range(1, default("REPLICAS") + 1))
    assert s.scenario == default("SCENARIO") and s.scenario in paths.scenarios()
    assert (s.duration, s.warmup) == (default("DURATION"), default("WARMUP"))
    assert s.duration >= 1 and s.warmup >= 0
    assert s.users is None and s.users_per_replica == default("USERS_PER_REPLICA")
    assert s.replica_cpus_source == "default"
    assert s.replica_cpus == pytest.approx(default_replica_cpus(max(s.sweep), 9))
    assert s.runtime == "auto"
    assert (s.worker_class, s.threads) == (default("WORKER_CLASS"), default("THREADS"))
    # WORKERS is either a fixed default or derived from the replica's CPU budget
    assert s.workers == (default("WORKERS") or math.ceil(s.replica_cpus - 1e-9))
    assert (s.port, s.app_port, s.store_port) == (8080, 8101, 6390)
    assert s.results == str(paths.RESULTS_DIR)
    assert s.host_cpus == 9


def test_every_knob_default_parses():
    """A default that its own parser rejects would break every run that leaves it unset."""
    for knob in KNOBS:
        if knob.default is not None:
            knob.parse(knob.default)


def test_blank_value_means_unset():
    s = load_ok(REPLICAS="  ", SWEEP="", DURATION=" ", USERS="")
    assert s.sweep == (1, 2, 3, 4)
    assert s.duration == 10.0
    assert s.users is None


def test_none_value_means_unset():
    assert load_ok(REPLICAS=None).sweep == (1, 2, 3, 4)  # type: ignore[arg-type]


def test_as_dict_records_every_setting_and_the_reserve():
    d = load_ok(SWEEP="2 1").as_dict()
    assert d["sweep"] == [1, 2]
    assert d["reserved_cpus"] == RESERVED_CPUS
    assert {"replica_cpus", "replica_cpus_source", "host_cpus", "scenario", "port"} <= set(d)


# -- REPLICAS and SWEEP --------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "sweep"), [("1", (1,)), ("3", (1, 2, 3)), (" 2 ", (1, 2))])
def test_replicas_gives_sweep_one_to_n(raw, sweep):
    assert load_ok(REPLICAS=raw).sweep == sweep


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "257", "1e2", "2 3", "+2"])
def test_replicas_bad(raw):
    message = usage_error(REPLICAS=raw)
    assert "REPLICAS" in message and repr(raw) in message


@pytest.mark.parametrize(
    ("raw", "sweep"),
    [("1 2 4 8", (1, 2, 4, 8)), ("4,1, 2", (1, 2, 4)), ("3", (3,)), (" 2  6 ", (2, 6))],
)
def test_sweep_list_sorted(raw, sweep):
    assert load_ok(SWEEP=raw).sweep == sweep


def test_sweep_overrides_replicas():
    assert load_ok(REPLICAS="8", SWEEP="2 3").sweep == (2, 3)


@pytest.mark.parametrize("raw", ["1 1", "1 2 1", "2,2"])
def test_sweep_repeats(raw):
    assert "repeat" in usage_error(SWEEP=raw)


@pytest.mark.parametrize("raw", ["a b", "1 x", "0", "1 -2", "1.5", "257", ",", "1;2"])
def test_sweep_garbage(raw):
    assert "SWEEP" in usage_error(SWEEP=raw)


# -- choices -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["nope", "JSON", "scenario_json", "json.py", ""])
def test_unknown_scenario(raw):
    if raw == "":  # blank is unset, i.e. the default
        assert load_ok(SCENARIO=raw).scenario == "mixed"
        return
    message = usage_error(SCENARIO=raw)
    assert "scenario" in message
    for name in paths.scenarios():  # the message lists what exists
        assert name in message


@pytest.mark.parametrize("name", paths.scenarios())
def test_every_scenario_file_is_a_choice(name):
    assert load_ok(SCENARIO=name).scenario == name


@pytest.mark.parametrize("raw", ["kubernetes", "Local", "none", "Docker"])
def test_unknown_runtime(raw):
    message = usage_error(RUNTIME=raw)
    assert "runtime" in message and "local" in message


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("localhost", "IPv4 address"),
        ("127.0.0.1;", "IPv4 address"),
        ("192.0.2.77", "not an address"),
    ],
)
def test_publish_address_is_one_of_this_hosts(raw, why):
    assert why in usage_error(PUBLISH_ADDRESS=raw)


def test_publish_address_default_and_every_interface_only_by_name():
    assert load_ok().publish_address == "127.0.0.1" == load_ok().entry_address
    everywhere = load_ok(PUBLISH_ADDRESS="0.0.0.0")
    assert everywhere.publish_address == "0.0.0.0" and everywhere.entry_address == "127.0.0.1"


@pytest.mark.parametrize("fault", ["drain-node", "stop-node"])
def test_node_faults_need_swarm_and_are_not_in_all(fault):
    assert "needs RUNTIME=swarm" in usage_error(FAULT=fault, RUNTIME="docker")
    assert load_ok(FAULT=fault, RUNTIME="swarm").faults == (fault,)
    assert fault not in load_ok(FAULT="all").faults


def test_swarm_knobs_check_their_values():
    assert "REGISTRY must" in usage_error(REGISTRY="http://x")
    assert "PLACE_STORE must name a swarm node" in usage_error(PLACE_STORE="node 1")
    assert load_ok(SWARM="cluster", REGISTRY="reg.example:5000/team/").registry == (
        "reg.example:5000/team"
    )


@pytest.mark.parametrize("raw", ["auto", "local", "docker", "swarm"])
def test_known_runtime(raw):
    assert load_ok(RUNTIME=raw).runtime == raw


def test_worker_class_choice():
    assert load_ok(WORKER_CLASS="sync").worker_class == "sync"
    assert "WORKER_CLASS" in usage_error(WORKER_CLASS="gevent")


# The on/off knob (SPIN_IDLE, since renamed BALLAST): whichever this tree has.
ON_OFF = sorted({k.name for k in KNOBS} & {"SPIN_IDLE", "BALLAST"})


@pytest.mark.parametrize("knob", ON_OFF)
def test_on_off_knobs_take_only_0_or_1(knob):
    load_ok(**{knob: "0"})
    load_ok(**{knob: "1"})
    for raw in ("2", "yes", "on"):
        assert knob in usage_error(**{knob: raw})


# -- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("20", 20.0), ("20s", 20.0), ("2m", 120.0), ("1.5", 1.5), (" 3 s ", 3.0), ("1", 1.0)],
)
def test_duration_parses(raw, seconds):
    assert load_ok(DURATION=raw).duration == seconds


@pytest.mark.parametrize("raw", ["0", "0.5", "abc", "-5", "10h", "1e3", "s", "nan", "inf"])
def test_duration_bad(raw):
    assert "DURATION" in usage_error(DURATION=raw)


def test_warmup_may_be_zero_but_not_negative():
    assert load_ok(WARMUP="0").warmup == 0.0
    assert "WARMUP" in usage_error(WARMUP="-1")


# -- REPLICA_CPUS ----------------------------------------------------------------------------


def test_replica_cpus_explicit():
    s = load_ok(REPLICA_CPUS="0.5")
    assert s.replica_cpus == 0.5 and s.replica_cpus_source == "REPLICA_CPUS"


@pytest.mark.parametrize("raw", ["0", "0.04", "-1", "abc", "nan", "inf", "-inf", "1/2", "0,5"])
def test_replica_cpus_bad(raw):
    assert "REPLICA_CPUS" in usage_error(REPLICA_CPUS=raw)


def test_replica_cpus_minimum_is_allowed():
    assert load_ok(REPLICA_CPUS=str(MIN_REPLICA_CPUS)).replica_cpus == MIN_REPLICA_CPUS


def test_replica_cpus_over_host():
    message = usage_error(host_cpus=4, REPLICA_CPUS="4.5")
    assert "4.5" in message and "4" in message
    assert load_ok(host_cpus=4, REPLICA_CPUS="4").replica_cpus == 4.0


# -- ports ---------------------------------------------------------------------------------


def test_port_equal_to_store_port():
    message = usage_error(PORT="17000", STORE_PORT="17000")
    assert "17000" in message


@pytest.mark.parametrize("knob", ["PORT", "STORE_PORT"])
def test_port_inside_replica_range(knob):
    # REPLICAS=4 from APP_PORT 19000: replicas use 19000..19003.
    base = {"APP_PORT": "19000", "REPLICAS": "4"}
    assert "19003" in usage_error(**base, **{knob: "19003"})
    assert "19000" in usage_error(**base, **{knob: "19000"})
    load_ok(**base, **{knob: "19004"})  # one past the last replica is fine
    load_ok(**base, **{knob: "18999"})


def test_replica_range_follows_largest_sweep_value():
    usage_error(APP_PORT="19000", SWEEP="1 6", PORT="19005")
    load_ok(APP_PORT="19000", SWEEP="1 5", PORT="19005")


def test_app_port_without_room_for_replicas():
    assert "APP_PORT" in usage_error(APP_PORT="65535", REPLICAS="2")
    assert load_ok(APP_PORT="65535", REPLICAS="1").app_port == 65535


@pytest.mark.parametrize("knob", ["PORT", "APP_PORT", "STORE_PORT"])
@pytest.mark.parametrize("raw", ["0", "65536", "http", "-80"])
def test_port_out_of_range(knob, raw):
    assert knob in usage_error(**{knob: raw})


# -- derived values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "n", "cpus"),
    [
        (2, 1, 1.0),
        (2, 2, 0.5),
        (2, 3, 0.3),  # 1/3 rounded down to a 0.05 step
        (2, 4, 0.25),
        (8, 3, 2.3),
        (16, 4, 3.75),
        (5, 4, 1.0),  # an exact step must not be floored to the one below by float error
        (7, 6, 1.0),
        (1, 1, MIN_REPLICA_CPUS),  # no CPU left beside the reserve: the minimum
        (2, 64, MIN_REPLICA_CPUS),
    ],
)
def test_default_replica_cpus(host, n, cpus):
    assert default_replica_cpus(n, host) == pytest.approx(cpus)


@pytest.mark.parametrize("host", range(1, 33))
def test_default_replica_cpus_is_the_largest_fitting_step(host):
    for n in range(1, 65):
        cpus = default_replica_cpus(n, host)
        steps = cpus / 0.05
        assert math.isclose(steps, round(steps), abs_tol=1e-6), (host, n, cpus)
        assert cpus >= MIN_REPLICA_CPUS
        if cpus > MIN_REPLICA_CPUS:
            assert n * cpus + RESERVED_CPUS <= host + 1e-9, (host, n, cpus)  # fits
            assert n * (cpus + 0.05) + RESERVED_CPUS > host + 1e-9, (host, n, cpus)  # largest


def test_load_derives_replica_cpus_from_largest_n():
    s = load_ok(host_cpus=2, SWEEP="1 2")
    assert s.replica_cpus == pytest.approx(0.5) and s.replica_cpus_source == "default"
    assert load_ok(host_cpus=2, REPLICAS="3").replica_cpus == pytest.approx(0.3)
    assert load_ok(host_cpus=2, SWEEP="4").replica_cpus == pytest.approx(0.25)


def test_users_at_scales_with_n_unless_users_is_set():
    s = load_ok(USERS_PER_REPLICA="5")
    assert [s.users_at(n) for n in (1, 2, 4)] == [5, 10, 20]
    fixed = load_ok(USERS="30", USERS_PER_REPLICA="5")
    assert [fixed.users_at(n) for n in (1, 2, 4)] == [30, 30, 30]
    assert load_ok().users_at(3) == 3 * default("USERS_PER_REPLICA")
    usage_error(USERS="0")
    usage_error(USERS_PER_REPLICA="0")


def test_fits_host():
    s = load_ok(host_cpus=2, REPLICA_CPUS="0.5", REPLICAS="4")
    assert s.fits_host(1) and s.fits_host(2)  # 2 x 0.5 + 1 reserved = 2 CPUs: just fits
    assert not s.fits_host(3) and not s.fits_host(4)
    tight = load_ok(host_cpus=2, REPLICA_CPUS="0.3", REPLICAS="3")
    assert tight.fits_host(3)  # 0.9 + 1 <= 2 despite float rounding of 3 x 0.3
    assert not load_ok(host_cpus=1).fits_host(1)  # nothing left beside the reserve


def test_default_budget_fits_every_n_of_the_sweep():
    for host in (2, 3, 4, 8, 16):
        s = load_ok(host_cpus=host, REPLICAS=str(host - 1))
        assert all(s.fits_host(n) for n in s.sweep), (host, s.replica_cpus)


@pytest.mark.parametrize(("cpus", "workers"), [("0.25", 1), ("1", 1), ("1.05", 2), ("2.5", 3)])
def test_workers_follow_the_replica_budget_unless_set(cpus, workers):
    assert load_ok(host_cpus=8, REPLICA_CPUS=cpus).workers == workers
    assert load_ok(host_cpus=8, REPLICA_CPUS=cpus, WORKERS="5").workers == 5
    assert "WORKERS" in usage_error(WORKERS="0")


# -- trials, load model, store -------------------------------------------------------------


def test_trial_and_load_defaults():
    s = settings.load({})
    assert (s.trials, s.ci_target, s.max_trials) == (2, 0.05, 10)
    assert (s.time_budget, s.warmup_trial, s.speed_adjust) == (360.0, 15.0, True)
    assert (s.duration, s.warmup, s.users_per_replica) == (10.0, 3.0, 8)
    assert (s.load, s.rate, s.store) == ("closed", None, "redis")


@pytest.mark.parametrize(
    ("raw", "value"), [("0", 0.0), ("0.05", 0.05), ("5%", 0.05), ("12.5%", 0.125)]
)
def test_ci_target_accepts_fractions_and_percentages(raw, value):
    assert settings.load({"CI_TARGET": raw}).ci_target == pytest.approx(value)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"TRIALS": "0"}, "TRIALS must be a whole number from 1 to 100, got '0'"),
        ({"TRIALS": "x"}, "TRIALS must be a whole number from 1 to 100, got 'x'"),
        ({"CI_TARGET": "1"}, "CI_TARGET must be 0 (off) or a fraction like 0.05 or 5%, got '1'"),
        ({"CI_TARGET": "150%"}, "CI_TARGET must be 0 (off) or a fraction"),
        ({"CI_TARGET": "-0.1"}, "CI_TARGET must be 0 (off) or a fraction"),
        ({"TRIALS": "5", "MAX_TRIALS": "4"}, "MAX_TRIALS=4 is below TRIALS=5"),
        ({"LOAD": "open"}, "unknown LOAD 'open'; choose one of: closed, rate"),
        ({"LOAD": "rate"}, "LOAD=rate needs RATE"),  # RATE missing
        (
            {"LOAD": "rate", "RATE": "0"},
            "RATE must be a number of requests per second from 0.1 to 1e+06",
        ),
        ({"LOAD": "rate", "RATE": "nan"}, "RATE must be a number of requests per second"),
        ({"RATE": "100"}, "RATE applies to LOAD=rate only"),  # RATE without LOAD=rate
        ({"STORE": "mongodb"}, "unknown STORE 'mongodb'; choose one of: redis, memcached"),
    ],
)
def test_bad_trial_load_and_store_knobs_are_usage_errors(over, message):
    with pytest.raises(settings.UsageError) as info:
        settings.load(over)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_open_loop_rate():
    s = settings.load({"LOAD": "rate", "RATE": "250.5"})
    assert s.load == "rate" and s.rate == 250.5


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"DURATION": "9" * 400}, "DURATION must be a duration"),
        ({"DURATION": "3601"}, "DURATION must be from 1 to 3600 s"),
        ({"WARMUP": "11m"}, "WARMUP must be from 0 to 600 s"),
        ({"TIME_BUDGET": "100000"}, "TIME_BUDGET must be from 0 to 86400 s"),
        ({"RATE": "1e400"}, "RATE must be a number of requests per second from 0.1 to 1e+06"),
        ({"LOADGEN_CPUS": "3"}, "LOADGEN_CPUS=3 is more than this host's 2 CPUs"),
        ({"RESULTS": "/tmp/my results"}, "has a space or one of"),
        ({"RESULTS": "/tmp/x;error_log /etc/passwd"}, "which nginx's configuration cannot hold"),
        ({"RESULTS": "/etc/passwd/x"}, "is not a directory this user can write to"),
        ({"HEALTH_PATH": "ready"}, "HEALTH_PATH must be a URL path"),
    ],
)
def test_unbounded_or_unsafe_values_are_usage_errors(over, message):
    with pytest.raises(UsageError) as err:
        settings.load(over, host_cpus=2)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_results_becomes_absolute(tmp_path, monkeypatch):
    """nginx and the replicas run in other directories: a relative RESULTS is resolved now."""
    monkeypatch.chdir(tmp_path)
    assert settings.load({"RESULTS": "out/runs"}, host_cpus=2).results == str(tmp_path / "out/runs")
