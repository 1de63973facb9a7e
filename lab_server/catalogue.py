"""The catalogue: agency → dataset → column, as the nodes declared it. Metadata, never rows.

Kept in the database (``datasets``/``columns``) so that a hub restart, or a node that is offline,
still shows what exists. A node replaces its whole entry each time it registers.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from datalab.manifest import ColumnSpec
from datalab.wire import AgencyCatalogue, CatalogueDataset
from lab_server.db import Column, Dataset, Node


def replace_datasets(session: Session, node: Node, datasets: list[CatalogueDataset]) -> None:
    """Make ``node``'s catalogue exactly ``datasets`` (inside the caller's transaction)."""
    node.datasets.clear()
    session.flush()  # delete the old rows before inserting new ones with the same names
    for ds in datasets:
        node.datasets.append(
            Dataset(
                name=ds.name,
                kind=ds.kind,
                rows=ds.rows,
                description=ds.description,
                refreshed_at=ds.refreshed_at,
                columns=[
                    Column(
                        position=i,
                        name=c.name,
                        type=c.type,
                        klass=c.klass.value,
                        description=c.description,
                        geo_level=c.geo_level,
                        values=c.values,
                    )
                    for i, c in enumerate(ds.columns)
                ],
            )
        )


def to_wire(row: Dataset) -> CatalogueDataset:
    return CatalogueDataset(
        name=row.name,
        kind=row.kind,
        rows=row.rows,
        description=row.description,
        refreshed_at=row.refreshed_at,
        columns=[
            ColumnSpec.model_validate(
                {
                    "name": c.name,
                    "type": c.type,
                    "class": c.klass,
                    "description": c.description,
                    "geo_level": c.geo_level,
                    "values": c.values,
                }
            )
            for c in row.columns
        ],
    )


def _nodes(session: Session) -> list[Node]:
    stmt = (
        select(Node)
        .options(selectinload(Node.datasets).selectinload(Dataset.columns))
        .order_by(Node.agency)
    )
    return list(session.execute(stmt).scalars())


def load_catalogue(session: Session) -> list[tuple[str, CatalogueDataset]]:
    """The (agency, dataset) pairs recipes validate against and choose targets from."""
    return [(node.agency, to_wire(ds)) for node in _nodes(session) for ds in node.datasets]


def agency_catalogues(
    session: Session, online_within_s: float, now: float
) -> list[AgencyCatalogue]:
    """The catalogue as people browse it, with each agency's node online/offline."""
    return [
        AgencyCatalogue(
            agency=node.agency,
            status=(
                "online"
                if node.last_seen is not None and now - node.last_seen <= online_within_s
                else "offline"
            ),
            last_seen=node.last_seen,
            version=node.version,
            datasets=[to_wire(ds) for ds in node.datasets],
        )
        for node in _nodes(session)
    ]
