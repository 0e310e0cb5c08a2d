"""provserver: the provisioning server (asyncio TCP server, signer manager, records, CLI)."""
