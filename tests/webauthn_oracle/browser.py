"""The browser and its security key for tests/webauthn_oracle.rs, with Yubico's `fido2` server as
the independent verifier.

    browser.py register CASES.json       answers each case's creation options (twofold-web's
                                         JSON, parsed by fido2) as a browser with a security key
                                         would, altered as the case says, and has Fido2Server
                                         verify the answer
    browser.py authenticate CASES.json   the same for request options and assertions

Each case carries "options" (the JSON the page would get), "tamper" (what to alter, "" for
nothing) and "origin". Keys and credential ids derive from the file's "seed" and the
registration's name, so that the second run signs with the key the first one made. Each result
carries "answer" (the JSON the page would post: `credential.toJSON()`, binary fields in base64url
without padding) and "fido2" ({"ok": true} or {"ok": false, "error": ...}): the Rust side
decides what both must accept and refuse.
"""

import datetime
import hashlib
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from fido2 import cbor
from fido2.attestation import AttestationType, NoneAttestation, PackedAttestation
from fido2.cose import ES256, EdDSA
from fido2.server import Fido2Server
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    RegistrationResponse,
)
from fido2.utils import websafe_encode

FLAG = AuthenticatorData.FLAG
ORIGINS = {
    "origin-http": "http://wiki.example",
    "origin-other": "https://evil.example",
    "origin-sub": "https://login.wiki.example",
}
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def main(argv):
    if len(argv) != 3 or argv[1] not in ("register", "authenticate"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[2]) as f:
        request = json.load(f)
    answer = register if argv[1] == "register" else authenticate
    results = {case["name"]: answer(request["seed"], case) for case in request["cases"]}
    print(json.dumps({"results": results}))
    return 0


def derive(seed, label):
    return hashlib.sha256(f"{seed}/{label}".encode()).digest()


class Credential:
    """A credential the key made for one registration, derived again for its assertions."""

    def __init__(self, seed, name, alg):
        secret = derive(seed, f"{name}/key")
        if alg == ES256.ALGORITHM:
            self.private = ec.derive_private_key(
                int.from_bytes(secret, "big") % P256_ORDER, ec.SECP256R1()
            )
            self.cose = ES256.from_cryptography_key(self.private.public_key())
        elif alg == EdDSA.ALGORITHM:
            self.private = Ed25519PrivateKey.from_private_bytes(secret)
            self.cose = EdDSA.from_cryptography_key(self.private.public_key())
        else:
            raise ValueError(f"no such algorithm {alg}")
        self.alg = alg
        # Ids of two lengths: 32 bytes for ES256, 64 for EdDSA.
        self.id = derive(seed, f"{name}/id") * (1 if alg == ES256.ALGORITHM else 2)
        self.aaguid = Aaguid(derive(seed, "aaguid")[:16])

    def sign(self, message):
        if self.alg == ES256.ALGORITHM:
            return self.private.sign(message, ec.ECDSA(hashes.SHA256()))
        return self.private.sign(message)

    def attested(self):
        return AttestedCredentialData.create(self.aaguid, self.id, self.cose)


def verdict(check):
    try:
        check()
        return {"ok": True, "error": None}
    except Exception as e:  # The oracle reports every refusal, whatever raised it.
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def flipped(data):
    return data[:-1] + bytes([data[-1] ^ 1])


def client_data(kind, challenge, case):
    tamper = case["tamper"]
    if tamper == "type":
        kind = "webauthn.get" if kind == "webauthn.create" else "webauthn.create"
    if tamper == "challenge":
        challenge = flipped(challenge)
    origin = ORIGINS.get(tamper, case["origin"])
    return CollectedClientData.create(
        kind, challenge, origin, cross_origin=tamper == "cross-origin"
    )


def register(seed, case):
    options = PublicKeyCredentialCreationOptions.from_dict(case["options"])
    tamper = case["tamper"]
    alg, fmt = case["alg"], case["fmt"]
    if alg not in [p.alg for p in options.pub_key_cred_params]:
        raise ValueError(f"the options do not offer alg {alg}")
    credential = Credential(seed, case["name"], alg)
    data = client_data("webauthn.create", options.challenge, case)
    rp_id = "evil.example" if tamper == "rp-id" else options.rp.id
    flags = FLAG.AT | (0 if tamper == "no-up" else FLAG.UP)
    if tamper == "uv":
        flags |= FLAG.UV
    auth_data = AuthenticatorData.create(
        hashlib.sha256(rp_id.encode()).digest(), flags, 0, credential.attested()
    )
    signature = credential.sign(bytes(auth_data) + data.hash)
    if fmt == "none":
        statement = {"alg": alg, "sig": signature} if tamper == "none-statement" else {}
    else:
        if tamper == "bad-attestation":
            signature = flipped(signature)
        statement = {"alg": alg, "sig": signature}
        if tamper == "x5c":
            statement = basic_attestation(bytes(auth_data) + data.hash)
    attestation_object = AttestationObject.create(fmt, auth_data, statement)
    raw_id = flipped(credential.id) if tamper == "raw-id" else credential.id
    response = RegistrationResponse(
        raw_id=raw_id,
        response=AuthenticatorAttestationResponse(
            client_data=data, attestation_object=attestation_object
        ),
    )
    selection = options.authenticator_selection
    state = {
        "challenge": websafe_encode(options.challenge),
        "user_verification": selection.user_verification if selection else None,
    }
    server = Fido2Server(
        options.rp, attestation="direct", verify_attestation=verify_attestation
    )
    return {
        "answer": dict(response),
        "fido2": verdict(lambda: server.register_complete(state, response)),
        "credential_id": websafe_encode(credential.id),
        "cose_public_key": websafe_encode(cbor.encode(dict(credential.cose))),
    }


def authenticate(seed, case):
    options = PublicKeyCredentialRequestOptions.from_dict(case["options"])
    tamper = case["tamper"]
    credential = Credential(seed, case["registration"], case["alg"])
    allowed = [d.id for d in options.allow_credentials or []]
    if allowed != [credential.id]:
        raise ValueError("the options do not allow exactly the registered credential")
    data = client_data("webauthn.get", options.challenge, case)
    rp_id = "evil.example" if tamper == "rp-id" else options.rp_id
    flags = 0 if tamper == "no-up" else FLAG.UP
    auth_data = AuthenticatorData.create(
        hashlib.sha256(rp_id.encode()).digest(), flags, case["counter"]
    )
    signature = credential.sign(bytes(auth_data) + data.hash)
    if tamper == "bad-signature":
        signature = flipped(signature)
    raw_id = derive(seed, "unknown") if tamper == "unknown-credential" else credential.id
    response = AuthenticationResponse(
        raw_id=raw_id,
        response=AuthenticatorAssertionResponse(
            client_data=data, authenticator_data=auth_data, signature=signature
        ),
    )
    state = {
        "challenge": websafe_encode(options.challenge),
        "user_verification": options.user_verification,
    }
    server = Fido2Server(PublicKeyCredentialRpEntity(id=options.rp_id, name="Wiki"))
    check = lambda: server.authenticate_complete(state, [credential.attested()], response)
    return {"answer": dict(response), "fido2": verdict(check)}


def verify_attestation(attestation_object, client_data_hash):
    """twofold's policy in fido2's terms: "none", or "packed" self attestation."""
    kind = {"none": NoneAttestation, "packed": PackedAttestation}[attestation_object.fmt]
    result = kind().verify(
        attestation_object.att_stmt, attestation_object.auth_data, client_data_hash
    )
    if result.attestation_type not in (AttestationType.NONE, AttestationType.SELF):
        raise ValueError(f"unexpected attestation type {result.attestation_type}")


def basic_attestation(signed):
    """A packed statement with a certificate that fido2 takes as valid basic attestation."""
    key = ec.derive_private_key(12345, ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twofold tests"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
            x509.NameAttribute(NameOID.COMMON_NAME, "oracle"),
        ]
    )
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=36500))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return {
        "alg": ES256.ALGORITHM,
        "sig": key.sign(signed, ec.ECDSA(hashes.SHA256())),
        "x5c": [certificate.public_bytes(serialization.Encoding.DER)],
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv))
