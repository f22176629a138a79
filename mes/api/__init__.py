"""The MES JSON API (FastAPI routers under `/api/v1`), assembled by `mes.app.create_app`."""
