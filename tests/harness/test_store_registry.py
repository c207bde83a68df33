"""The store registry (hscale/stores.py): one entry is all hscale needs to know of a store.

The recipe of the README's "Adding a store" followed by a test: a fake in-memory store
registered through its entry alone is accepted by the knobs, the runtimes and `make
compare`, gets its local server from the entry, and shows up in every derived list.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from refapp import config as app_config

from hscale import runtimes, settings, stores
from hscale.compare_stores import parse_stores
from hscale.runtimes import binaries, local_stores, stackfile
from hscale.runtimes.local_stores import MemoryStore, StoreRun


class FakeStore(MemoryStore):
    """A store with no server, as memory is: what the recipe adds."""


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> stores.Store:
    entry = stores.Store(
        "fake", "a test's in-memory store", f"{__name__}:FakeStore", runtimes=("local",)
    )
    monkeypatch.setitem(stores.STORES, "fake", entry)
    return entry


def test_hscale_and_the_app_name_the_same_stores() -> None:
    assert tuple(n for n, s in stores.STORES.items() if s.for_reference) == app_config.STORES


def test_derived_lists_come_from_the_entries() -> None:
    assert stores.services() == stackfile.STORE_SERVICES == ("redis", "memcached", "postgres")
    assert binaries.INSTALL_HINT["postgres"] == "postgresql"
    assert [s.name for s in stores.STORES.values() if s.needs_init] == ["postgres"]
    for runtime in stores.RUNTIMES:
        assert stores.supported(runtime) == tuple(stores.STORES)


def test_a_store_added_through_its_entry_alone_is_accepted(
    fake: stores.Store, tmp_path: Path
) -> None:
    s = settings.load({"STORE": "fake", "RUNTIME": "local"}, host_cpus=2)
    assert s.store == "fake"
    assert parse_stores("redis fake") == ["redis", "fake"]
    run = StoreRun(s, "x", tmp_path, tmp_path, spawn=None)
    assert type(local_stores.create(run)) is FakeStore
    rt = runtimes.create(s, "x", tmp_path / "rt")
    try:
        assert rt.name == "local" and type(rt.store) is FakeStore
    finally:
        rt.stop()
    # an entry that names only the local runtime is refused elsewhere, in one line
    docker_s = dataclasses.replace(s, runtime="docker")
    with pytest.raises(settings.UsageError, match=r"STORE=fake is not available on the docker"):
        runtimes.create(docker_s, "x", tmp_path / "rt2")


def test_an_unknown_store_names_the_registry_choices() -> None:
    with pytest.raises(settings.UsageError, match="choose one of: redis, memcached, postgres"):
        settings.load({"STORE": "mongo"}, host_cpus=2)
