"""REST API routes for incidents (under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
