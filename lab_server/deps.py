"""Typed dependency aliases: what a route needs, said in its signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from lab_server.auth import NodeCaller, current_person, services_of, signed_node
from lab_server.permissions import Actor
from lab_server.services import Services

Hub = Annotated[Services, Depends(services_of)]
CurrentUser = Annotated[Actor, Depends(current_person)]
SignedNode = Annotated[NodeCaller, Depends(signed_node)]
