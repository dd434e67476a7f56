"""WebSocket signalling: waiting room, offer/answer/ICE relay, resume, posture during a call.

Modules, one idea each:

* ``protocol``   the versioned wire messages (pydantic discriminated unions), error and close codes
* ``limits``     size, rate (token bucket) and error-budget limits per connection
* ``presence``   who is in which consultation, in memory or in Redis (shared by every node)
* ``bus``        messages between server processes: in-process, or Redis pub/sub
* ``ports``      what the hub needs from consultations, posture and audit, and the real adapters
* ``connection`` one participant's socket: reader, bounded writer, limits
* ``hub``        the rules: join, admission, relay, resume, suspension, end
* ``routes``     the ``/ws/v1/signalling`` endpoint

See docs/protocol.md for the wire protocol.
"""
