"""The independent FIDO2 oracle for twofold's tests: Yubico's `fido2` package (and `cryptography`).

    check.py verify CASES.json   verifies what the software key made, prints one result per case
    check.py make SEED           makes assertions with keys derived from SEED, prints them
    check.py pin CASES.json      computes the PIN/UV auth protocols' values for each case with
                                 fido2's PinProtocolV1 and PinProtocolV2, prints them

Everything binary is hex in the JSON. `verify` never raises on a bad case: it reports
{"ok": false, "error": ...} so that the Rust side decides what must be accepted and refused.
"""

import hashlib
import json
import sys
from unittest import mock

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fido2 import cbor
from fido2.attestation import (
    AttestationType,
    FidoU2FAttestation,
    NoneAttestation,
    PackedAttestation,
)
from fido2.cose import ES256, CoseKey, EdDSA
from fido2.ctap1 import RegistrationData, SignatureData
from fido2.ctap2 import pin as fido2_pin
from fido2.server import Fido2Server
from fido2.utils import websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialRpEntity,
    RegistrationResponse,
)

ATTESTATIONS = {"none": NoneAttestation, "packed": PackedAttestation}


def main(argv):
    if len(argv) == 3 and argv[1] == "verify":
        with open(argv[2]) as f:
            cases = json.load(f)["cases"]
        results = {case["name"]: run(case) for case in cases}
        print(json.dumps({"results": results}))
    elif len(argv) == 3 and argv[1] == "make":
        print(json.dumps({"cases": make(argv[2])}))
    elif len(argv) == 3 and argv[1] == "pin":
        with open(argv[2]) as f:
            cases = json.load(f)["cases"]
        print(json.dumps({"results": {case["name"]: pin(case) for case in cases}}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


def run(case):
    try:
        details = CHECKS[case["kind"]](case)
        return {"ok": True, "error": None, **(details or {})}
    except Exception as e:  # The oracle reports every refusal, whatever raised it.
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def unhex(case, key):
    return bytes.fromhex(case[key])


def server(case, attestation=None):
    rp = PublicKeyCredentialRpEntity(id=case["rp_id"], name="twofold test")
    return Fido2Server(rp, attestation=attestation, verify_attestation=verify_attestation)


def state(case):
    return {"challenge": websafe_encode(unhex(case, "challenge")), "user_verification": None}


def verify_attestation(attestation_object, client_data_hash):
    kind = ATTESTATIONS[attestation_object.fmt]
    result = kind().verify(
        attestation_object.att_stmt, attestation_object.auth_data, client_data_hash
    )
    if result.attestation_type not in (AttestationType.NONE, AttestationType.SELF):
        raise ValueError(f"unexpected attestation type {result.attestation_type}")


def register(case):
    """A makeCredential result as a WebAuthn registration, through Fido2Server."""
    attestation_object = AttestationObject(unhex(case, "attestation_object"))
    response = RegistrationResponse(
        raw_id=unhex(case, "credential_id"),
        response=AuthenticatorAttestationResponse(
            client_data=CollectedClientData(unhex(case, "client_data_json")),
            attestation_object=attestation_object,
        ),
    )
    auth_data = server(case, attestation="direct").register_complete(state(case), response)
    credential = auth_data.credential_data
    if credential.credential_id != unhex(case, "credential_id"):
        raise ValueError("the attested credential id is not the one the key reported")
    if dict(credential.public_key) != dict(cbor.decode(unhex(case, "cose_public_key"))):
        raise ValueError("the attested public key is not the one the key reported")
    return {
        "fmt": attestation_object.fmt,
        "flags": int(auth_data.flags),
        "sign_count": auth_data.counter,
        "aaguid": bytes(credential.aaguid).hex(),
    }


def authenticate(case):
    """A getAssertion result as a WebAuthn authentication, through Fido2Server, and the
    signature checked on its own with the COSE key."""
    auth_data = AuthenticatorData(unhex(case, "auth_data"))
    client_data = CollectedClientData(unhex(case, "client_data_json"))
    signature = unhex(case, "signature")
    public_key = CoseKey.parse(cbor.decode(unhex(case, "cose_public_key")))
    public_key.verify(bytes(auth_data) + client_data.hash, signature)
    credential_id = unhex(case, "credential_id")
    attested = AttestedCredentialData.create(
        Aaguid(unhex(case, "aaguid")), credential_id, public_key
    )
    response = AuthenticationResponse(
        raw_id=credential_id,
        response=AuthenticatorAssertionResponse(
            client_data=client_data, authenticator_data=auth_data, signature=signature
        ),
    )
    server(case).authenticate_complete(state(case), [attested], response)
    return {"flags": int(auth_data.flags), "sign_count": auth_data.counter}


def u2f_register(case):
    """A U2F registration: the attestation signature with the certificate's key, and the same
    data as a fido-u2f attestation statement."""
    app_param, client_param = unhex(case, "app_param"), unhex(case, "client_param")
    registration = RegistrationData(unhex(case, "registration_data"))
    registration.verify(app_param, client_param)
    attestation_object = AttestationObject.from_ctap1(app_param, registration)
    FidoU2FAttestation().verify(
        attestation_object.att_stmt, attestation_object.auth_data, client_param
    )
    return {
        "key_handle": registration.key_handle.hex(),
        "public_key": registration.public_key.hex(),
    }


def u2f_authenticate(case):
    signature = SignatureData(unhex(case, "signature_data"))
    signature.verify(
        unhex(case, "app_param"), unhex(case, "client_param"), unhex(case, "public_key")
    )
    return {"flags": signature.user_presence, "sign_count": signature.counter}


CHECKS = {
    "register": register,
    "authenticate": authenticate,
    "u2f_register": u2f_register,
    "u2f_authenticate": u2f_authenticate,
}


def make(seed):
    """Assertions signed by keys derived from `seed`, in the shapes a key returns them."""

    def derive(label):
        return hashlib.sha256(f"{seed}/{label}".encode()).digest()

    p256 = ec.derive_private_key(
        int.from_bytes(derive("es256"), "big") % P256_ORDER, ec.SECP256R1()
    )
    ed25519 = Ed25519PrivateKey.from_private_bytes(derive("eddsa"))
    es256_cose = ES256.from_cryptography_key(p256.public_key())
    eddsa_cose = EdDSA.from_cryptography_key(ed25519.public_key())

    def sign_es256(message):
        return p256.sign(message, ec.ECDSA(hashes.SHA256()))

    flag = AuthenticatorData.FLAG
    shapes = [
        ("es256-up", es256_cose, sign_es256, flag.UP, 1, None),
        ("es256-up-uv", es256_cose, sign_es256, flag.UP | flag.UV, 0x01020304, None),
        ("es256-counter-zero", es256_cose, sign_es256, flag.UP, 0, None),
        ("es256-extensions", es256_cose, sign_es256, flag.UP | flag.ED, 7, {"credProtect": 2}),
        ("eddsa-up", eddsa_cose, ed25519.sign, flag.UP, 42, None),
        ("eddsa-up-uv", eddsa_cose, ed25519.sign, flag.UP | flag.UV, 0xFFFFFFFF, None),
    ]
    cases = []
    for name, cose, sign, flags, counter, extensions in shapes:
        rp_id = "wiki.example" if name.startswith("es256") else "host.example"
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp_id.encode()).digest(), flags, counter, b"", extensions
        )
        client_data = CollectedClientData.create(
            "webauthn.get", derive(name), "https://" + rp_id
        )
        signature = sign(bytes(auth_data) + client_data.hash)
        # The oracle's own signatures must verify with the oracle's own code.
        cose.verify(bytes(auth_data) + client_data.hash, signature)
        cases.append(
            {
                "name": name,
                "cose_public_key": cbor.encode(dict(cose)).hex(),
                "rp_id": rp_id,
                "auth_data": bytes(auth_data).hex(),
                "client_data_hash": client_data.hash.hex(),
                "signature": signature.hex(),
                "sign_count": counter,
                "user_verified": bool(flags & flag.UV),
            }
        )
    return cases


def pin(case):
    """One PIN/UV auth protocol case, the authenticator's way round: fido2's kdf over the ECDH
    of the fixed authenticator key and the host's platform key, encrypt (with the case's IV),
    decrypt of what the host encrypted, authenticate; and fido2's own encapsulate against the
    host's platform key, for the host to agree with."""
    protocol = {1: fido2_pin.PinProtocolV1, 2: fido2_pin.PinProtocolV2}[case["protocol"]]()
    authenticator = ec.derive_private_key(
        int(case["authenticator_scalar"], 16), ec.SECP256R1()
    )
    platform = case["platform_key"]
    platform_public = ec.EllipticCurvePublicNumbers(
        int(platform["x"], 16), int(platform["y"], 16), ec.SECP256R1()
    ).public_key()
    shared = protocol.kdf(authenticator.exchange(ec.ECDH(), platform_public))
    pin_hash = hashlib.sha256(case["pin"].encode()).digest()[:16]
    iv = unhex(case, "iv")
    with mock.patch.object(fido2_pin.os, "urandom", lambda n: iv[:n]):
        pin_hash_enc = protocol.encrypt(shared, pin_hash)
    token = unhex(case, "token")
    client_data_hash = unhex(case, "client_data_hash")
    peer = {1: 2, 3: -25, -1: 1, -2: bytes.fromhex(platform["x"]), -3: bytes.fromhex(platform["y"])}
    key_agreement, encapsulated = protocol.encapsulate(peer)
    return {
        "shared_secret": shared.hex(),
        "pin_hash_enc": pin_hash_enc.hex(),
        "their_pin_hash": protocol.decrypt(shared, unhex(case, "our_pin_hash_enc")).hex(),
        "token_enc": protocol.encrypt(shared, token).hex(),
        "param": protocol.authenticate(token, client_data_hash).hex(),
        "shared_mac": protocol.authenticate(shared, client_data_hash).hex(),
        "valid_token": protocol.validate_token(token).hex(),
        "encapsulated": {
            "x": key_agreement[-2].hex(),
            "y": key_agreement[-3].hex(),
            "shared_secret": encapsulated.hex(),
        },
    }


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


if __name__ == "__main__":
    sys.exit(main(sys.argv))
