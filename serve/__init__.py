"""The Ray Serve routing endpoint: ingress (serve.ingress) -> model deployment on actors.engine.Engine (serve.model),
started by serve.app, hot-reloaded by serve.reload; docs/serve.md."""
