"""The Wallaroo MLOps API face: `POST /v1/api/<group>/<verb>` with JSON, multipart for uploads."""
