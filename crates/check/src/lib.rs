//! `stepforge-check`: lowering, type and shape checking, linearity.
