"""Ray Serve application for production routing (its deployment graph lands with the serving issue)."""
