"""HTTP: every node's ``/metrics`` and the coordinator's dashboard (issue 15).

- :mod:`.http`: the server shell shared by both: the access token derived from the cluster secret, the
  middleware that checks it before any handler runs, and security headers.
- :mod:`.sources`: what a node and the coordinator expose as Prometheus metrics (see :mod:`dynamr.metrics`).
- :mod:`.dashboard`: the coordinator's pages and their live updates (server-sent events).
- :mod:`.pages` and :mod:`.plots`: HTML and SVG, rendered on the server (no front-end build, no script
  library: a few lines in ``static/live.js`` swap in the fragments the server pushes).
"""
