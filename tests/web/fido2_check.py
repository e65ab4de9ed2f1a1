"""An independent check of what the browser's virtual security key made on twofold-web's pages,
with Yubico's fido2 (Fido2Server) from the venv that tests/run.sh makes.

    fido2_check.py CASES.json

CASES.json: {"rp_id", "origin", "registration": {"challenge", "credential"},
"assertions": [{"challenge", "credential"}...]}, where each credential is the browser's
PublicKeyCredential.toJSON() and each challenge is the base64url one the page passed to
navigator.credentials. Prints a JSON report; exits non-zero with the reason when fido2 refuses.
"""

import json
import sys

from fido2.server import Fido2Server
from fido2.webauthn import (
    AuthenticationResponse,
    PublicKeyCredentialRpEntity,
    RegistrationResponse,
)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        cases = json.load(f)
    origin = cases["origin"]
    # The exact origin, stricter than fido2's default (any origin the rp_id may serve).
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=cases["rp_id"], name="twofold-web test"),
        verify_origin=lambda o: o == origin,
    )
    registration = cases["registration"]
    registered = server.register_complete(
        {"challenge": registration["challenge"], "user_verification": None},
        RegistrationResponse.from_dict(registration["credential"]),
    )
    report = {
        "registration": {
            "flags": int(registered.flags),
            "sign_count": registered.counter,
            "credential_id": registered.credential_data.credential_id.hex(),
        },
        "assertions": [],
    }
    for assertion in cases["assertions"]:
        response = AuthenticationResponse.from_dict(assertion["credential"])
        server.authenticate_complete(
            {"challenge": assertion["challenge"], "user_verification": None},
            [registered.credential_data],
            response,
        )
        auth_data = response.response.authenticator_data
        report["assertions"].append(
            {"flags": int(auth_data.flags), "sign_count": auth_data.counter}
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
