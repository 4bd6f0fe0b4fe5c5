//! meshcall

pub mod media;
