"""One readable file per topic of the course week, plus the sweep that runs them."""
