"""The Craft AI face: the API the official craft-ai-sdk calls (`/api/v1`), and endpoint triggers (`/endpoints`)."""
