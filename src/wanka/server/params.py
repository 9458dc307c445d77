"""Path and body parameters several routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam
from pydantic import Field

MAX_ID = 2**63 - 1  # ids are 64-bit in both databases: a larger one is a 422, not a 500
ID = Annotated[int, PathParam(ge=1, le=MAX_ID, description="an id, 1 to 2^63 - 1")]
NAME = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="lower-case letters, digits and -")
