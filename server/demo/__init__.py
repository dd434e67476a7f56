"""``telemed demo``: the whole product in one command, and the story the end-to-end test runs.

``server.demo.story`` is the scripted story (``run_demo``), ``steps`` times and checks each
step, ``embedded`` runs the server on embedded defaults, ``render`` draws the timeline,
``hold`` keeps the server up for ``--keep-running``, ``cli`` is the command. Nothing here is
imported by the server itself; the command imports the story only when it runs.
"""
