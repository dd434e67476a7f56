"""WebSocket signalling: waiting room, offer/answer/ICE relay, resume, posture during a call.

Modules, one idea each:

* ``protocol``    the versioned wire messages (pydantic discriminated unions), error and close codes
* ``limits``      size, rate (token bucket) and error-budget limits per connection
* ``connection``  one participant's socket: reader, bounded writer, limits
* ``presence``    who is in which consultation, in memory or in Redis (shared by every node)
* ``bus``         messages between server processes: in-process, or Redis pub/sub
* ``room``        one consultation as a node sees it (cached records, local sockets)
* ``roster``      changing records and telling every socket, on every node
* ``admission``   join / resume / replace, and the host's admit, deny, return, start, end
* ``attestation`` posture at join and during the call; suspension
* ``departure``   leave, dropped sockets and their grace period, dead nodes
* ``recovery``    after Redis trouble: restore lost presence, tell sockets to ``resync``
* ``ice``         TURN credentials per socket: in the welcome, renewed before they expire
* ``hub``         one per process: the socket loop and the relay (the hot path)
* ``ports``       what the hub needs from consultations, posture, audit and TURN; the adapters
* ``factory``     builds the hub for the settings (in-process, or Redis)
* ``routes``      the ``/ws/v1/signalling`` endpoint

See docs/protocol.md for the wire protocol.
"""
