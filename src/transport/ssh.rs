//! The russh implementation of the transport: key auth, known_hosts verification, exec with stdin.
