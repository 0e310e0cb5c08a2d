"""atcaprov: production provisioning of ATECC508A secure elements.

Layers (each imports only those below it): ``packet`` (CRC, framing, status codes), ``hal``
(transport drivers picked by name), ``device`` (CryptoAuthLib-style basic API), ``atcacert``
(compressed certificates), ``certinfo``, ``protocol`` (client/server messages) and
``provision`` (the ten-stage flow). ``emulator`` answers packets like the real chips.
"""

__version__ = "0.1.0"
