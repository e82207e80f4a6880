"""Identity, signatures and key files: the only package that imports PyNaCl.

Submodules are imported by name (``p2pmarket.crypto.signing``…) rather than
re-exported here, so that ``p2pmarket search`` can derive a peer id without
loading libsodium.
"""
