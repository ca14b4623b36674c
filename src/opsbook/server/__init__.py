"""``opsbook serve``: the app factory (REST API + console + /metrics), the runner (uvicorn),
procedure schedules. Imports FastAPI and uvicorn: only the serve command loads it."""
