"""`breakglass serve`: the always-on service and its alert intake."""
