//! `stepforge-ir`: types, dimensions and the typed stream graph.
