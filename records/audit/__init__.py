"""The tamper-evident audit trail.

Pure parts: ``chain`` (entries, hash chain), ``merkle`` (RFC 6962 tree head),
``checkpoint`` (Ed25519-signed tree heads), ``verify`` (offline verifier, export format),
``fhir`` (FHIR R4 AuditEvent mapping). See ``docs/audit.md``.
"""
