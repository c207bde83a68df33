"""The compose project and swarm stack name of a run: unique, and short enough that
`<stack>_<service>` stays within swarm's 63 characters whatever the label."""

from __future__ import annotations

from hscale.cleanup import PROJECT_CHARS, project_of
from hscale.results import new_run_id


def test_a_short_run_id_keeps_all_its_letters_and_digits() -> None:
    assert project_of("20261130-124130-json-bcf4fa") == "hscale20261130124130jsonbcf4fa"


def test_a_long_label_is_cut_in_the_middle_keeping_time_and_suffix() -> None:
    run_id = new_run_id("stateless-redis-" + "locustfile" * 5)
    name = project_of(run_id)
    assert len(name) == PROJECT_CHARS and len(f"{name}_locust-worker") <= 63
    assert name.startswith("hscale" + run_id[:8]) and name.endswith(run_id[-6:])
    assert project_of(run_id) == name  # cleanup finds the same name again
