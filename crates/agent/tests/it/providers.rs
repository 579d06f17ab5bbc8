//! The providers against a misbehaving loopback server.
