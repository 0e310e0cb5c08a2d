"""Run by pytrustplatform's own interpreter (``.venv/tools-ptp``), not by the test process:
decode and verify a secure-element manifest with pytrustplatform, print one JSON line per entry.

Usage: ``ptp_verify.py MANIFEST.json SIGNER_CERT.pem``. pytrustplatform pins libraries that
clash with the test extra (esp-cryptoauth-utility pins older ones), so it lives in its own venv
made by ``make`` and is driven from the test as a program. Imports nothing of atcaprov.
"""

import json
import sys

from pytrustplatform.manifest.manifest import Manifest, ManifestSigner


def main() -> None:
    manifest_path, signer_path = sys.argv[1], sys.argv[2]
    with open(signer_path, "rb") as f:
        signer = ManifestSigner(f.read())
    with open(manifest_path, encoding="utf-8") as f:
        text = f.read()
    for signed in Manifest(text, signer_ca=signer):
        signed.verify()  # raises unless the ES256 signature verifies
        element = signed.get_secure_element()
        print(
            json.dumps(
                {
                    "uniqueId": element.uniqueId,
                    "model": element.model,
                    "partNumber": element.partNumber,
                    "device": element.get_certificate(0, 0),
                    "signer": element.get_certificate(0, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
