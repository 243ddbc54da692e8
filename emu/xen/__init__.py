"""Xen paravirtual I/O plumbing: public ABI definitions, the xenstore wire protocol, an in-memory xenstore daemon and a client."""
