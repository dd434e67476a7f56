"""The device_policy error tree: every refusal has a stable ``code`` and an HTTP ``status``.

Grouped by what the caller can do about it::

    DevicePolicyError                  500 device_policy_error
    ├── PolicyInvalid                  500 policy_invalid            fix the policy file
    ├── UnsupportedPlatform            400 unsupported_platform      no rules for this OS
    ├── CanonicalJsonError             400 canonical_json_error      value cannot be signed
    ├── KeyMaterialError               400 invalid_key               bad public/private key
    │   └── InsecureKeyFile            500 insecure_key_file         fix the key file's mode
    ├── AttestationRefused             401 attestation_refused       report not accepted
    │   ├── MalformedReport            400 malformed_report          agent bug: fix the report
    │   ├── BadSignature               401 bad_signature             wrong key or tampered report
    │   ├── DeviceMismatch             401 device_mismatch           report names another device
    │   ├── NonceMismatch              401 nonce_mismatch            ask for a new challenge
    │   ├── NonceUnknown               401 nonce_unknown             new challenge (server)
    │   ├── NonceReused                401 nonce_reused              new challenge (server)
    │   ├── NonceExpired               401 nonce_expired             new challenge (server)
    │   ├── ClockSkew                  401 clock_skew                fix the device clock
    │   ├── UnknownDevice              401 unknown_device            enrol the device (server)
    │   ├── DeviceRevoked              403 device_revoked            admin re-enrols (server)
    │   ├── SimulatedSourceRefused     403 simulated_source_refused  real collectors only
    │   └── PolicyMismatch             409 policy_mismatch           fetch the current policy
    └── PostureTokenRefused            401 posture_token_refused     re-attest
        ├── InvalidPostureToken        401 invalid_posture_token     re-attest
        │   └── PostureTokenExpired    401 posture_token_expired     re-attest (server)
        ├── KeyBindingMismatch         401 key_binding_mismatch      token used with another key
        ├── InvalidRequestProof        401 invalid_proof             sign a fresh proof
        │   └── ProofReplayed          401 proof_replayed            sign a fresh proof (server)
        └── TokenLifetimeTooLong       500 token_lifetime_too_long   issuer bug: ttl > 10 min

The server registers ``DevicePolicyError`` with its problem+json handler. The classes
marked "(server)" are raised by the server's nonce store and device registry; they live
here so that agent, server and tests share one set of codes. Messages name the state
that refused and never carry a key, a token, a nonce or a fact value.
"""

from __future__ import annotations

from typing import Any


class DevicePolicyError(Exception):
    """Base of every error the device_policy library raises."""

    code = "device_policy_error"
    status = 500
    title = "Device policy error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class PolicyInvalid(DevicePolicyError):
    """The policy file does not parse or validate; ``problems`` names rule id and field."""

    code, status, title = "policy_invalid", 500, "The device policy is not valid"

    def __init__(self, detail: str, *, problems: list[str]) -> None:
        super().__init__(detail, problems=problems)
        self.problems = problems


class UnsupportedPlatform(DevicePolicyError):
    code, status, title = "unsupported_platform", 400, "The device platform is not supported"


class CanonicalJsonError(DevicePolicyError, ValueError):
    code, status, title = "canonical_json_error", 400, "The value has no canonical JSON form"


class KeyMaterialError(DevicePolicyError):
    code, status, title = "invalid_key", 400, "The key is not a valid Ed25519 key"


class InsecureKeyFile(KeyMaterialError):
    code, status, title = "insecure_key_file", 500, "The device key file is readable by others"


class AttestationRefused(DevicePolicyError):
    code, status, title = "attestation_refused", 401, "The posture report was refused"


class MalformedReport(AttestationRefused):
    code, status, title = "malformed_report", 400, "The posture report is malformed"


class BadSignature(AttestationRefused):
    code, title = "bad_signature", "The report signature does not verify with the enrolled key"


class DeviceMismatch(AttestationRefused):
    code, title = "device_mismatch", "The report is for another device"


class NonceMismatch(AttestationRefused):
    code, title = "nonce_mismatch", "The report does not answer the challenge issued"


class NonceUnknown(AttestationRefused):
    code, title = "nonce_unknown", "The report answers no challenge the server issued"


class NonceReused(AttestationRefused):
    code, title = "nonce_reused", "The challenge has already been answered"


class NonceExpired(AttestationRefused):
    code, title = "nonce_expired", "The challenge has expired"


class ClockSkew(AttestationRefused):
    code, title = "clock_skew", "The device clock is too far from the server clock"


class UnknownDevice(AttestationRefused):
    code, title = "unknown_device", "The device is not enrolled"


class DeviceRevoked(AttestationRefused):
    code, status, title = "device_revoked", 403, "The device enrolment has been revoked"


class SimulatedSourceRefused(AttestationRefused):
    code, status, title = (
        "simulated_source_refused",
        403,
        "Simulated posture facts are accepted only in development mode",
    )


class PolicyMismatch(AttestationRefused):
    code, status, title = "policy_mismatch", 409, "The report was made for another policy version"


class PostureTokenRefused(DevicePolicyError):
    code, status, title = "posture_token_refused", 401, "The posture token was refused"


class InvalidPostureToken(PostureTokenRefused):
    code, title = "invalid_posture_token", "The posture token is not valid"


class PostureTokenExpired(InvalidPostureToken):
    code, title = "posture_token_expired", "The posture token has expired"


class KeyBindingMismatch(PostureTokenRefused):
    code, title = "key_binding_mismatch", "The posture token is bound to another device key"


class InvalidRequestProof(PostureTokenRefused):
    code, title = "invalid_proof", "The request proof is not valid"


class ProofReplayed(InvalidRequestProof):
    code, title = "proof_replayed", "The request proof has already been used"


class TokenLifetimeTooLong(DevicePolicyError, ValueError):
    code, status, title = (
        "token_lifetime_too_long",
        500,
        "A posture token may live at most 10 minutes",
    )
