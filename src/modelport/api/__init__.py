"""HTTP faces: one subpackage per vendor API, each a thin adapter over the services. `app.py` assembles them."""
