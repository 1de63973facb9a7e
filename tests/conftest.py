"""Session fixtures: one synthetic city and one live lab (hub + a node per agency, real
processes on loopback) shared by the end-to-end, attack and notebook tests.

Everything the nodes and the analyst send to the hub goes through a recording proxy, so the
attack tests can inspect every byte the hub received.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datalab.client import Lab
from datalab_cli.local_lab import ANALYST, AUDITOR, OPERATOR, LocalLab, free_port
from tests.support.federated import Scenario, run_scenario
from tests.support.identifiers import CityIdentifiers
from tests.support.proxy import RecordingProxy

TEST_PEOPLE = 20_000
TEST_SEED = 11


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic_city import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("city") / "city"
    synthesize(SynthConfig(people=TEST_PEOPLE, seed=TEST_SEED), out)
    return out


@pytest.fixture(scope="session")
def city_identifiers(city: Path) -> CityIdentifiers:
    return CityIdentifiers.load(city)


@pytest.fixture(scope="session")
def hub_proxy_lab(
    city: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalLab, RecordingProxy]]:
    state = tmp_path_factory.mktemp("lab")
    lab = LocalLab(city_dir=city, state_dir=state, port=free_port())
    proxy = RecordingProxy(lab.port)
    lab.node_hub_url = proxy.url
    lab.start()
    try:
        yield lab, proxy
    finally:
        lab.stop()
        proxy.close()


@pytest.fixture(scope="session")
def lab(hub_proxy_lab: tuple[LocalLab, RecordingProxy]) -> LocalLab:
    return hub_proxy_lab[0]


@pytest.fixture(scope="session")
def proxy(hub_proxy_lab: tuple[LocalLab, RecordingProxy]) -> RecordingProxy:
    return hub_proxy_lab[1]


@pytest.fixture(scope="session")
def analyst(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    with Lab(proxy.url, lab.tokens[ANALYST]) as client:
        yield client


@pytest.fixture(scope="session")
def auditor(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    with Lab(proxy.url, lab.tokens[AUDITOR]) as client:
        yield client


@pytest.fixture(scope="session")
def operator(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    with Lab(proxy.url, lab.tokens[OPERATOR]) as client:
        yield client


#: the agencies of the governed lab: both serve ``key_groups``; nothing is approved at start.
GOVERNED_AGENCIES = ["civil_affairs", "health"]


@pytest.fixture(scope="session")
def governed_lab(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLab]:
    """A second live lab where no recipe is approved until an agency admin approves it through
    the hub (approval requests, agency-signed grants): the governance tests' own lab, so their
    approvals, revocations and audit tampering never touch the shared one."""
    state = tmp_path_factory.mktemp("governed")
    lab = LocalLab(city_dir=city, state_dir=state, agencies=GOVERNED_AGENCIES, approve=False)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the federated tests last: their lab's Flower processes poll all the time, and left
    running beside the other tests they would slow them (and their timeouts) down. Among them,
    the federated notebook first."""
    items.sort(key=_flower_order)


def _flower_order(item: pytest.Item) -> int:
    """0: no Flower; 1: the federated notebook, which must train while every district node is
    up (before the federated scenario kills one); 2: the other Flower tests."""
    if "flower_lab" not in getattr(item, "fixturenames", ()):
        return 0
    return 1 if item.name.startswith("test_federated_notebook") else 2


@pytest.fixture(scope="session")
def flower_lab(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLab]:
    """A live lab with federated training: the hub with its Flower SuperLink and the district
    nodes with their SuperNodes and gates (real processes). Only the federated tests use it:
    Flower's processes are slow to start and each secure round takes tens of seconds."""
    state = tmp_path_factory.mktemp("flower")
    lab = LocalLab(
        city_dir=city,
        state_dir=state,
        agencies=[p.name for p in sorted(city.glob("district_*"))],
        flower=True,
        flower_round_timeout_s=15.0,
        flower_record_updates=state / "updates",
    )
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def federated_scenario(flower_lab: LocalLab) -> Scenario:
    """One training job, run once: a district refusing the app, another dying mid-round."""
    return run_scenario(flower_lab)
