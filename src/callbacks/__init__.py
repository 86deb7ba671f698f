"""archlab's own Lightning callbacks (everything else comes from Lightning)."""
