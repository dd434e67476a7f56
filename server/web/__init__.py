"""The remote specialist's page: ``GET /join`` and its script and style, served with strict headers.

The page is plain HTML, JavaScript and CSS (no build step, nothing from another origin).
It reads the invite token from the URL fragment, redeems it, and runs the call in the
browser; see docs/web.md.
"""
