"""Public pages that belong to no feature: landing with pricing, language redirects, error pages, health."""
