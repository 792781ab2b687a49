"""The ground floor: what every layer above `data` may import, and which imports none of them.

See docs/architecture.md. Keep this file free of imports: `data` imports `memroute.core.errors` and
`memroute.core.config`, which would otherwise pull in whatever this file imports.
"""
