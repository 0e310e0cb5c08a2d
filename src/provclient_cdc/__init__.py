"""provclient_cdc: the line operator's console client (app note 8971A section 3.3).

Waits for kit boards on serial ports (USB CDC kits, or any pyserial URL such as the virtual
board's ``socket://``), provisions the ATECC508A on each through :func:`atcaprov.provision` with
certificates from ``provserver``, and prints the app note's progress lines. Modules:

* :mod:`.cli`: the click command ``provclient-cdc`` (options, --help layout, exit codes);
* :mod:`.console`: operator keys (ENTER, ESC, V) without blocking, terminal mode restored;
* :mod:`.boards`: finding kit boards, opening one, noticing it was removed;
* :mod:`.server_link`: the TCP/TLS connection to the server and the library's hooks;
* :mod:`.session`: the per-board loop;
* :mod:`.output`: operator lines and JSON result lines.
"""

from __future__ import annotations

__all__: list[str] = []
