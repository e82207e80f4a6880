"""The peer-to-peer side of a node: one libp2p host with gossip, the DHT and peers.

Everything that imports libp2p lives here (a lint rule enforces it), so the
offline commands never pay its ~1 s import. This package never touches the store:
:class:`~p2pmarket.node.Node` hands it callbacks that validate and keep records.
"""
