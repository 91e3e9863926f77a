"""The REST service (FastAPI + uvicorn, the ``server`` extra): jobs over HTTP."""
