"""REST API routes for monitoring (under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
