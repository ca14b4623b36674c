"""Console pages for incidents."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
