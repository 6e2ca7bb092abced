"""Where model code and jobs execute: `local` supervised OS processes (the default); `ray` later for clusters."""
