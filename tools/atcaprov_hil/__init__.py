"""``make hil``: the kit drivers against real kernel USB devices, inside a QEMU guest.

The host side is ``scripts/hil/run`` (fetch, initramfs, boot); this package is the program the
guest runs (``python -m atcaprov_hil``) from the host's venv: :mod:`.gadget` makes the USB
gadgets (a CDC kit board and a HID signer module on ``dummy_hcd``) through configfs and plugs
or unplugs them, :mod:`.checks` runs the tests through the real drivers and prints one
``HIL-PASS``/``HIL-FAIL`` line each, ``HIL-MEASURE`` lines for the round-trip rates and a
closing ``HIL-DONE`` line. See docs/hil.md.
"""
