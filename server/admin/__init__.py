"""The healthcare admin's console, served by the server at ``/admin`` (docs/admin.md).

Sign-in with a password and a TOTP second factor (``signin``, ``totp``, ``recovery``,
``sessions``), and the screens' services: audit search and export (``audit_search``),
integrity (``integrity``), the review queue (``reviews``), devices, users and the day's
consultations. Routes are in ``server.admin.routes``; the page is ``static/``.
"""
