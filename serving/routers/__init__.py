"""One router per resource; each is a thin shell over ``ticket_assets`` and the serving state."""
