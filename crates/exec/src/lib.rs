//! `stepforge-exec`: functional executor and verification.
