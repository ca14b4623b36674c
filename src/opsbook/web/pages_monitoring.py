"""Console pages for monitoring."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
