"""The Dataiku API node face: the admin API (/admin/api) and the prediction API (/public/api/v1)."""
