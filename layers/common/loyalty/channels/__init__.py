"""Messaging providers at our edge: webhook signatures (`signatures`) and the pushes
they send, parsed into plain values (`inbound`). Wire formats: CHANNELS.md."""
